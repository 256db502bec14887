#!/usr/bin/env bash
# The chapters on a GPU machine, in one call (see bench/README.md, "Chapters on a GPU").
# 1. every chapter at smoke scale on CUDA; 2. the benchmark; 3. chapters at book scale,
# cheapest first, while BOOK_BUDGET seconds (default 300) last. Each chapter's time and
# every glued number beside the stored CPU one go to $OUT. Run from the repository root;
# the data travel in .devdata (MNIST, Fashion-MNIST, PTB), since ../shared does not.
set -uo pipefail
python="${PYTHON:-python3}"
out="${OUT:-.}"
export VAELAB_DATA="${VAELAB_DATA:-.devdata}" VAELAB_DEVICE="${VAELAB_DEVICE:-cuda}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# cheapest first, by the stored CPU times of book/reproducibility.md
chapters=(${CHAPTERS:-book/06_recipe.ipynb book/02_gaussian_precision.ipynb book/03_bernoulli_vs_cb.ipynb
          book/01_two_terms.ipynb book/05_beta_vae.ipynb book/04_annealing.ipynb})
status=0
VAELAB_SCALE=smoke "$python" tools/run_bare.py --json "$out/smoke.json" "${chapters[@]}" > "$out/smoke.txt" 2>&1 || status=1
grep -E '^(ran|FAILED) ' "$out/smoke.txt"
if [ -z "${SKIP_BENCH:-}" ]; then
    "$python" bench/run.py --device "$VAELAB_DEVICE" --configs 8,32 --conv-configs 5,8,32 > "$out/bench.txt" 2>&1 || status=1
    tr '\r' '\n' < "$out/bench.txt" | grep -v 'step/s' | grep -v '^$' | tail -n 25
fi
budget="${BOOK_BUDGET:-300}" start=$(date +%s)
for nb in "${chapters[@]}"; do
    left=$(( budget - ($(date +%s) - start) ))
    if (( left < 30 )); then echo "book scale: budget spent before $nb"; break; fi
    name=$(basename "$nb" .ipynb)
    VAELAB_SCALE=book timeout "$left" "$python" tools/run_bare.py --json "$out/book-$name.json" "$nb" \
        > "$out/book-$name.txt" 2>&1 || { echo "book scale: $nb failed or ran out of time"; status=1; }
    grep -E '^(ran|FAILED) ' "$out/book-$name.txt"
done
exit $status
