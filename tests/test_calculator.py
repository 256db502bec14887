"""The loss calculator page (book/loss_calculator.md, _static/loss_calculator.js) in headless Chromium.

Every number the form shows is compared with vaelab.check_loss, as check_loss's own
``format(x, ".4g")`` would write it, over 250 combinations of sizes, reductions, weights and
reconstruction kinds, bad input included: where check_loss raises, the form must say what is
wrong in the same words. The form is also driven by the keyboard alone, and photographed in
the light and dark modes and at a phone's width (``_build/screenshots/loss_calculator-*.png``).
Needs the built book, like the render checks of tests/test_book.py (marker ``book``).
"""
from __future__ import annotations

import itertools
import warnings

import pytest

import vaelab
from test_book import book_html, browser, server  # noqa: F401  (the render checks' fixtures)

pytestmark = pytest.mark.book
PAGE = "book/loss_calculator"
FIELDS = ("data_dim", "latent_dim", "batch_size", "recon", "recon_weight", "recon_dims", "recon_batch",
          "kl_weight", "kl_dims", "kl_batch")
# the form's reconstruction kinds, as check_loss arguments
KINDS = {"nll": dict(recon="nll"), "bce_grey": dict(recon="bce", binary=False),
         "squared_error": dict(recon="squared_error")}
# (data size as typed, M, B as typed, a, w): the reductions and kinds run over all of these
SIZES = [
    ("784", "20", "", "1", "1"),
    ("1, 28, 28", "10", "128", "0.5", "4"),
    ("3x64x64", "128", "64", "1", "0.00025"),
    ("4096", "10", "32", "2", "16"),
    ("1 28 28", "2", "100", "784", "0"),
]
BAD = [  # (what is typed, over the first size set)
    dict(kl_weight="-1"), dict(kl_weight="-0.5"), dict(recon_weight="0"), dict(recon_weight="-2"),
    dict(data_dim="0"), dict(data_dim="1, 0, 28"), dict(latent_dim="0"), dict(latent_dim="2.5"),
    dict(kl_weight="abc"), dict(recon_weight=""), dict(batch_size="0", recon_batch="sum"),
    dict(batch_size="-3", kl_batch="sum"), dict(batch_size="", recon_batch="sum"),
    dict(data_dim=""), dict(kl_weight="inf"),
]


def _combinations() -> list[dict]:
    combos = []
    for (n, m, b, a, w), kind, rd, rb, kd, kb in itertools.product(
            SIZES, KINDS, *[("sum", "mean")] * 4):
        combos.append(dict(data_dim=n, latent_dim=m, batch_size=b, recon=kind, recon_weight=a, recon_dims=rd,
                           recon_batch=rb, kl_weight=w, kl_dims=kd, kl_batch=kb))
    base = dict(combos[0], recon_batch="mean", kl_batch="mean")
    combos += [{**base, **bad} for bad in BAD]
    return combos


def _python_value(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _data_dim(text: str):
    pieces = [p for p in text.replace(",", " ").replace("x", " ").split() if p]
    return tuple(int(p) for p in pieces) if len(pieces) > 1 else _python_value(text)


def _check_loss(combo: dict):
    """check_loss's report for what the form was given, or its ValueError."""
    kwargs = dict(KINDS[combo["recon"]], data_dim=_data_dim(combo["data_dim"]),
                  latent_dim=_python_value(combo["latent_dim"]), recon_weight=_python_value(combo["recon_weight"]),
                  kl_weight=_python_value(combo["kl_weight"]), recon_dims=combo["recon_dims"],
                  recon_batch=combo["recon_batch"], kl_dims=combo["kl_dims"], kl_batch=combo["kl_batch"])
    if combo["batch_size"].strip():
        kwargs["batch_size"] = _python_value(combo["batch_size"])
    if kwargs["recon_weight"] == "":
        kwargs["recon_weight"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return vaelab.check_loss(**kwargs)
    except ValueError as error:
        return error


FILL = """
const form = document.getElementById('vaelab-loss-calculator');
const results = [];
for (const combo of arguments[0]) {
  for (const [name, value] of Object.entries(combo)) {
    form.elements[name].value = value;
    form.elements[name].dispatchEvent(new Event('input', {bubbles: true}));
  }
  const out = (k) => form.querySelector(`[data-out='${k}']`);
  results.push({state: form.dataset.state, error: out('error').textContent, hidden: out('error').hidden,
                beta_eff: out('beta_eff').textContent, beta_norm: out('beta_norm').textContent,
                sigma2: out('sigma2').textContent, sigma: out('sigma').textContent,
                reading: out('reading').textContent});
}
return results;
"""


@pytest.fixture(scope="module")
def page(browser, server, book_html):  # noqa: F811
    assert (book_html / f"{PAGE}.html").is_file(), "the calculator page was not built"
    browser.set_window_size(1280, 900)
    browser.get(f"{server}/{PAGE}.html")
    browser.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
    return browser


def test_every_number_agrees_with_check_loss(page):
    combos = _combinations()
    assert len(combos) >= 200
    shown = page.execute_script(FILL, combos)
    errors = 0
    for combo, form in zip(combos, shown):
        expected = _check_loss(combo)
        if isinstance(expected, ValueError):
            errors += 1
            rule = str(expected).split(", got")[0].split("; got")[0]
            assert form["state"] == "error" and not form["hidden"], (combo, form)
            assert form["error"].startswith(rule), (combo, form["error"], str(expected))
            assert form["beta_eff"] == "–" and form["reading"] == ""
            continue
        assert form["state"] == "ok" and form["hidden"], (combo, form)
        assert form["beta_eff"] == format(expected.beta_eff, ".4g"), (combo, form)
        assert form["beta_norm"] == format(expected.beta_norm, ".4g"), (combo, form)
        for name in ("sigma2", "sigma"):
            value = getattr(expected, name)
            assert form[name] == ("–" if value is None else format(value, ".4g")), (combo, name, form)
        assert f"β_eff = {form['beta_eff']}" in form["reading"]
        beta = expected.beta_eff
        if expected.sigma is not None and beta > 0:
            assert f"σ = {form['sigma']}" in form["reading"] and "spread of your data" in form["reading"]
        elif beta >= 4:
            assert "Expect posterior collapse" in form["reading"] and "between β_eff = 4 and 8" in form["reading"]
        elif 0 < beta < 1:
            assert "no bound on the likelihood at all" in form["reading"]
        elif beta == 1 and combo["recon"] == "bce_grey":
            assert "is no negative ELBO" in form["reading"]
        elif beta == 0:
            assert "autoencoder" in form["reading"]
    assert errors == 24 + len(BAD)  # the missing batch sizes (a quarter of the first size set's) and the bad input


def test_keyboard_alone(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page.refresh()
    form = page.find_element(By.ID, "vaelab-loss-calculator")
    controls = form.find_elements(By.CSS_SELECTOR, "input, select")
    assert [c.get_attribute("name") for c in controls] == list(FIELDS)
    for control in controls:  # every control has a visible label
        label = form.find_element(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
        assert label.text.strip()
    # from the top of the page, Tab alone reaches the form
    page.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    actions = ActionChains(page)
    for _ in range(300):
        actions.send_keys(Keys.TAB).perform()
        if page.switch_to.active_element.get_attribute("name") == "data_dim":
            break
    order = [page.switch_to.active_element.get_attribute("name")]
    for _ in FIELDS[1:]:
        page.switch_to.active_element.send_keys(Keys.TAB)
        order.append(page.switch_to.active_element.get_attribute("name"))
    assert order == list(FIELDS), "Tab does not walk the form in reading order"
    # type a mean-over-pixels MSE on MNIST with the keyboard: data size, then the kind and the reduction
    for _ in FIELDS[1:]:  # back to the first field
        ActionChains(page).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    active = page.switch_to.active_element
    assert active.get_attribute("name") == "data_dim"
    active.send_keys(Keys.CONTROL, "a")
    active.send_keys("784", Keys.TAB, Keys.TAB, Keys.TAB)  # to the reconstruction kind
    page.switch_to.active_element.send_keys(Keys.END)  # squared error
    page.switch_to.active_element.send_keys(Keys.TAB, Keys.TAB)  # to recon_dims
    page.switch_to.active_element.send_keys(Keys.END)  # mean
    shown = {k: form.find_element(By.CSS_SELECTOR, f"[data-out='{k}']").text for k in ("beta_eff", "sigma")}
    assert shown == {"beta_eff": "784", "sigma": "19.8"}, shown


THEME = """
document.documentElement.dataset.theme = arguments[0];
document.documentElement.dataset.mode = arguments[0];
const input = document.getElementById('calc-latent-dim');
const style = getComputedStyle(input);
const form = document.getElementById('vaelab-loss-calculator');
return {color: style.color, background: style.backgroundColor, bodyBackground: getComputedStyle(document.body).backgroundColor,
        formWide: form.scrollWidth > form.clientWidth + 1,
        pageWide: document.documentElement.scrollWidth > window.innerWidth};
"""


def _luminance(css: str) -> float:
    r, g, b = (float(v) for v in css[css.index("(") + 1: css.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("mode, width", [("light", 1280), ("dark", 1280), ("light", 390), ("dark", 390)])
def test_light_dark_and_narrow(page, book_html, mode, width):  # noqa: F811
    page.set_window_size(width, 900)
    page.refresh()
    form = {"data_dim": "1, 28, 28", "recon": "squared_error", "recon_dims": "mean"}
    page.execute_script(FILL, [form])
    state = page.execute_script(THEME, mode)
    page.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
    # the text of a field stands out from its background in either mode, and follows the mode
    assert abs(_luminance(state["color"]) - _luminance(state["background"])) > 100, state
    assert (_luminance(state["bodyBackground"]) < 128) == (mode == "dark"), state
    assert not state["formWide"] and not state["pageWide"], f"the form scrolls sideways at {width} px: {state}"
    name = f"loss_calculator-{mode}" + ("-narrow" if width < 600 else "")
    page.execute_script("document.getElementById('vaelab-loss-calculator').scrollIntoView()")
    path = book_html.parent / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.set_window_size(width, 1800 if width < 600 else 1300)  # the whole form and its reading
    page.execute_script("document.getElementById('vaelab-loss-calculator').scrollIntoView()")
    page.save_screenshot(str(path))
