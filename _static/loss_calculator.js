/* The loss calculator of book/loss_calculator.md: vaelab.check_loss in the page.
 *
 * The formulas are those of vaelab/ledger.py (effective_beta, beta_norm, implied_sigma2)
 * and its argument checks say what is wrong in check_loss's words; tests/test_calculator.py
 * compares every number this form shows with vaelab.check_loss. Jupyter Book loads every
 * file of _static/ on every page, so this script does nothing where the form is absent.
 */
(function () {
  "use strict";

  // Chapter 1's sweep (binarised MNIST, a 784-400-20 MLP VAE, one seed): vaelab.ledger.COLLAPSE_ONSET.
  var COLLAPSE_ONSET = [4, 8];
  var COLLAPSE_COMPLETE = 32;

  // Python's format(x, ".4g").
  function fmt(x) {
    if (x === 0) return "0";
    if (!isFinite(x)) return String(x);
    var rounded = Number(x.toPrecision(4));
    var exponent = Math.floor(Math.log10(Math.abs(rounded)));
    if (exponent < -4 || exponent >= 4) {
      var parts = rounded.toExponential(3).split("e");
      var mantissa = parts[0].replace(/\.?0+$/, "");
      var e = Number(parts[1]);
      var digits = String(Math.abs(e));
      if (digits.length < 2) digits = "0" + digits;
      return mantissa + "e" + (e < 0 ? "-" : "+") + digits;
    }
    var text = rounded.toFixed(Math.max(0, 3 - exponent));
    return text.indexOf(".") >= 0 ? text.replace(/\.?0+$/, "") : text;
  }

  function Problem(message) {
    this.message = message;
  }

  // check_positive_int
  function positiveInt(name, raw) {
    var text = raw.trim();
    if (!/^[+-]?\d+$/.test(text)) {
      throw new Problem(name + " must be an integer >= 1, got " + (text === "" ? "nothing" : text));
    }
    var value = parseInt(text, 10);
    if (value < 1) throw new Problem(name + " must be an integer >= 1, got " + value);
    return value;
  }

  // ledger._data_dim: an int, or the shape of one example ("1, 28, 28", "1×28×28")
  function dataDim(raw) {
    var text = raw.trim().replace(/^[(\[]|[)\]]$/g, "");
    var pieces = text.split(/\s*[,x×*]\s*|\s+/).filter(function (p) { return p !== ""; });
    if (pieces.length > 1) {
      var ok = pieces.every(function (p) { return /^\d+$/.test(p) && parseInt(p, 10) > 0; });
      if (!ok) {
        throw new Problem("data_dim must be a positive int or the shape of one example; got (" +
                          pieces.join(", ") + ")");
      }
      return pieces.reduce(function (n, p) { return n * parseInt(p, 10); }, 1);
    }
    try {
      return positiveInt("data_dim", text);
    } catch (problem) {
      throw new Problem(problem.message + ". Pass the number of data dimensions per example, e.g. 784 " +
                        "for 28×28 images, or the shape of one example, 1, 28, 28");
    }
  }

  // check_positive
  function positive(name, raw, allowZero) {
    var text = raw.trim();
    // Python's float() reads "inf" and "nan", which check_positive then refuses as not finite
    var value = /^[+-]?(inf|infinity|nan)$/i.test(text) ? NaN : Number(text);
    if (text === "" || (isNaN(value) && !/^[+-]?(inf|infinity|nan)$/i.test(text))) {
      throw new Problem(name + " must be a real number, got " + (text === "" ? "nothing" : "'" + text + "'"));
    }
    if (!isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
      throw new Problem(name + " must be a finite number " + (allowZero ? ">= 0" : "> 0") + ", got " + text);
    }
    return value;
  }

  // ledger.effective_beta, with its checks in its order
  function compute(v) {
    var n = dataDim(v.data_dim);
    var m = positiveInt("latent_dim", v.latent_dim);
    var a = positive("recon_weight", v.recon_weight, false);
    var w = positive("kl_weight", v.kl_weight, true);
    var given = v.batch_size.trim() !== "";
    if (v.recon_batch !== v.kl_batch && !given) {
      throw new Problem("batch_size is needed when recon_batch ('" + v.recon_batch + "') and kl_batch ('" +
                        v.kl_batch + "') differ: the effective beta then depends on it; pass batch_size=B, " +
                        "the minibatch size");
    }
    var b = given ? positiveInt("batch_size", v.batch_size) : 1;
    var sR = (v.recon_dims === "mean" ? 1 / n : 1) * (v.recon_batch === "mean" ? 1 / b : 1);
    var sK = (v.kl_dims === "mean" ? 1 / m : 1) * (v.kl_batch === "mean" ? 1 / b : 1);
    var beta = (w * sK) / (a * sR);
    var result = {n: n, m: m, b: b, given: given, beta: beta, norm: beta * m / n, sigma2: null, sigma: null};
    if (v.recon === "squared_error") {
      result.sigma2 = beta / 2;
      result.sigma = Math.sqrt(result.sigma2);
    }
    return result;
  }

  function reading(v, r) {
    var over = {sum: "summed", mean: "averaged"};
    var text = ["Up to a positive factor, which only rescales the learning rate, this loss is the " +
                "per-dimension loss summed over the " + r.n.toLocaleString("en") + " data dimensions plus " +
                "β_eff · KL per example, with β_eff = " + fmt(r.beta) + " (β_norm = β_eff · M / N = " +
                fmt(r.norm) + ")."];
    if (v.recon_batch !== v.kl_batch) {
      text.push("The reconstruction term is " + over[v.recon_batch] + " over the batch and the KL " +
                over[v.kl_batch] + ", so this weight changes with the batch size: it holds at B = " + r.b + ".");
    } else if (r.given) {
      text.push("Both terms are " + over[v.kl_batch] + " over the batch, so the batch size cancels " +
                "(check_loss warns that it is not used).");
    }
    var beta = r.beta;
    if (beta === 0) {
      text.push("There is no KL term: this trains an autoencoder, not a VAE.");
    } else if (v.recon === "squared_error") {
      text.push("A squared error is a Gaussian log-likelihood with a fixed variance: this is the negative " +
                "ELBO of a Gaussian decoder with σ² = β_eff / 2 = " + fmt(r.sigma2) + ", σ = " + fmt(r.sigma) +
                " in data units; the weight is that σ, not β_norm (chapter 2). Compare σ with the spread of " +
                "your data: pixels in [0, 1] have a standard deviation of at most 0.5 (MNIST's is about " +
                "0.31), and a σ near or above it tells the decoder the images are mostly noise, so the " +
                "code stays small and units switch off.");
    } else if (Math.abs(beta - 1) <= 1e-9) {
      text.push(v.recon === "bce_grey"
        ? "This has the ELBO's weighting (β = 1) but is no negative ELBO: on grey levels BCE is not a " +
          "normalised likelihood, so its value bounds no log-likelihood (chapter 3)."
        : "This is the negative ELBO itself (β = 1), provided the per-dimension loss is a normalised " +
          "likelihood of the data (BCE on binary pixels is; on grey levels it is not, chapter 3).");
    } else if (beta > 1) {
      text.push("That is the negative ELBO with its KL term weighted " + fmt(beta) + " times: a β-VAE, " +
                "which trades reconstruction for a lower rate and fewer active latents.");
      if (beta >= COLLAPSE_ONSET[0]) {
        text.push("Expect posterior collapse: in chapter 1's sweep (binarised MNIST, a 784-400-20 MLP VAE, " +
                  "one seed) most units switched off between β_eff = " + COLLAPSE_ONSET[0] + " and " +
                  COLLAPSE_ONSET[1] + ", and none stayed active at " + COLLAPSE_COMPLETE + ".");
      }
    } else {
      text.push("That is the negative ELBO with its KL term weighted " + fmt(beta) + " times. Below 1 the " +
                "objective is no bound on the likelihood at all, so its value must not be reported as one.");
    }
    if (v.recon === "bce_grey" && Math.abs(beta - 1) > 1e-9 && beta !== 0) {
      text.push("With a BCE on grey levels it is an ELBO in form only (chapter 3).");
    }
    return text.join(" ");
  }

  function setup(form) {
    var fields = ["data_dim", "latent_dim", "batch_size", "recon", "recon_weight", "recon_dims", "recon_batch",
                  "kl_weight", "kl_dims", "kl_batch"];
    var out = function (name) { return form.querySelector("[data-out='" + name + "']"); };

    function update() {
      var v = {};
      fields.forEach(function (name) { v[name] = form.elements[name].value; });
      var error = out("error");
      fields.forEach(function (name) { form.elements[name].removeAttribute("aria-invalid"); });
      try {
        var r = compute(v);
        error.textContent = "";
        error.hidden = true;
        out("beta_eff").textContent = fmt(r.beta);
        out("beta_norm").textContent = fmt(r.norm);
        out("sigma2").textContent = r.sigma2 === null ? "–" : fmt(r.sigma2);
        out("sigma").textContent = r.sigma === null ? "–" : fmt(r.sigma);
        out("reading").textContent = reading(v, r);
        form.setAttribute("data-state", "ok");
      } catch (problem) {
        if (!(problem instanceof Problem)) throw problem;
        error.textContent = problem.message;
        error.hidden = false;
        var name = problem.message.split(" ")[0];
        if (form.elements[name]) form.elements[name].setAttribute("aria-invalid", "true");
        ["beta_eff", "beta_norm", "sigma2", "sigma"].forEach(function (k) { out(k).textContent = "–"; });
        out("reading").textContent = "";
        form.setAttribute("data-state", "error");
      }
    }

    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
    update();
  }

  function start() {
    var forms = document.querySelectorAll("form.vaelab-calc");
    for (var i = 0; i < forms.length; i++) setup(forms[i]);
  }

  window.vaelabLossCalculator = {compute: compute, fmt: fmt};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
