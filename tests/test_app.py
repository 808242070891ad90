"""The local search page: its API through gradio_client (ranked list = ``mdreid.index search``, shares,
overlays, re-ranking, errors on bad uploads and on another model's index) and the page itself driven in
headless Chromium. In CI (``CI=true``) a missing browser fails the test instead of skipping it."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import save_weights_checkpoint
from mdreid.index.cli import main as index_main
from test_explain import tiny_module

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
gradio_client = pytest.importorskip("gradio_client")  # the app extra, pulled by dev: present under make test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_gallery(folder: Path, ids: int = 4, per_id: int = 3) -> Path:
    """Images of ``ids`` identities (a colour each, noise on top) and their manifest."""
    rng = np.random.default_rng(0)
    lines = ["split,pid,camid,rgb,nir,tir"]
    for pid in range(ids):
        colour = rng.integers(0, 255, 3)
        for k in range(per_id):
            names = []
            for m in "rnt":
                pixels = np.clip(colour + rng.normal(0, 40, (48, 24, 3)), 0, 255).astype(np.uint8)
                name = f"{pid}_{k}_{m}.png"
                Image.fromarray(pixels).save(folder / name)
                names.append(name)
            lines.append(f"gallery,{pid},{k % 3},{','.join(names)}")
    manifest = folder / "gallery.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An index of a tiny model's gallery, another model's index, and the page serving the first."""
    from mdreid.app.cli import launch, parser

    root = tmp_path_factory.mktemp("app")
    manifest = write_gallery(root)
    for name, seed in (("m", 0), ("other", 1)):
        ckpt = save_weights_checkpoint(tiny_module(seed=seed), root / f"{name}.ckpt")
        args = ["build", str(root / f"{name}-index"), "--ckpt", str(ckpt), "--manifest", str(manifest)]
        assert index_main([*args, "--device", "cpu"]) == 0
    port = free_port()
    # served as a user would start it, from the folder that holds the index: the page shows "m-index"
    cwd = pytest.MonkeyPatch()
    cwd.chdir(root)
    page = launch(parser().parse_args(["m-index", "--port", str(port), "--device", "cpu"]), block=False)
    yield root, f"http://127.0.0.1:{port}/"
    page.close()
    cwd.undo()


def cli_search(root: Path, out: str, *files: str, camid: int = 1, top_k: int = 5) -> list[int]:
    args = ["search", str(root / "m-index"), "--camid", str(camid), "--gallery-modalities", "RNT"]
    flags = [f for pair in zip(("--rgb", "--nir", "--tir"), files, strict=False) for f in pair if pair[1]]
    assert (
        index_main([*args, *flags, "--top-k", str(top_k), "--out", str(root / out), "--device", "cpu"]) == 0
    )
    return [h["item"] for h in json.loads((root / out / "results.json").read_text())[0]["hits"]]


def test_api_through_gradio_client(served) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    root, url = served
    client = Client(url, verbose=False)
    assert {"/search", "/load_item"} <= set(
        client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    )
    rgb, tir = str(root / "1_0_r.png"), str(root / "1_0_t.png")
    settings = [1, str(root / "m-index"), ["R", "N", "T"], 5, False, "sh", 1]
    table, cams, status = client.predict(
        handle_file(rgb), None, handle_file(tir), *settings, api_name="/search"
    )
    expected = cli_search(root, "cli", rgb, "", tir)
    rows = table["data"]
    assert [int(r[1]) for r in rows] == expected and status.startswith("RT -> RNT: 5 matches")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5] and all(r[5] == "" for r in rows)
    assert rows[0][7] == "" and rows[0][6] != "" and rows[0][8] != ""  # q N: not in the query
    assert len(cams) == 5  # rank 1: query R, T and gallery R, N, T
    # re-ranking reorders by the re-ranked distance, which the table shows
    table, _, status = client.predict(
        handle_file(rgb), None, handle_file(tir), *settings[:4], True, "sh", 0, api_name="/search"
    )
    reranked = [float(r[5]) for r in table["data"]]
    assert reranked == sorted(reranked) and "(re-ranked)" in status
    # loading an item fills the query slots with its files
    r, n, t, camid = client.predict(str(root / "m-index"), 4, api_name="/load_item")
    assert Path(r).name == "1_1_r.png" and Path(t).name == "1_1_t.png" and camid == 1
    # bad input: a text file as an image, another model's index
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_text("not an image either")
    with pytest.raises(AppError, match="Invalid file type"):  # refused by the page's file type
        client.predict(handle_file(str(root / "notes.txt")), None, None, *settings, api_name="/search")
    with pytest.raises(AppError, match="broken.png is not an image"):  # by the engine's check
        client.predict(None, handle_file(str(root / "broken.png")), None, *settings, api_name="/search")
    other = [1, str(root / "other-index"), *settings[2:]]
    with pytest.raises(AppError, match="was built with another model"):
        client.predict(handle_file(rgb), None, None, *other, api_name="/search")
    assert client.predict(handle_file(rgb), None, None, *settings, api_name="/search")[2].startswith(
        "R -> RNT"
    )


def test_index_of_another_model_is_found_by_identity(served, tmp_path: Path, capsys) -> None:
    """The page accepts an index by its model's sha256, not by the checkpoint's path: a copy of the model
    elsewhere opens the index, a file rewritten in place under the index's recorded path does not."""
    from mdreid.app.cli import main as app_main
    from mdreid.app.engine import SearchEngine
    from mdreid.factory import load_module
    from mdreid.process.errors import MDReIDError

    root, _ = served
    copy = shutil.copy(root / "m.ckpt", tmp_path / "copy.ckpt")
    assert SearchEngine(load_module(copy), copy).store(root / "m-index").size == 12
    # the other model's index, its checkpoint path now holding this model (a training rewrote the file)
    moved = shutil.copytree(root / "other-index", tmp_path / "other-index")
    info = json.loads((moved / "index.json").read_text())
    info["model"]["checkpoint"] = str(copy)
    (moved / "index.json").write_text(json.dumps(info))
    with pytest.raises(MDReIDError, match="was built with another model .* sha256"):
        SearchEngine(load_module(copy), copy).store(moved)
    with pytest.raises(SystemExit, match="2"):  # refused before the page starts
        app_main([str(moved), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "now holds another model" in err[0]


def chromium_driver():
    """Headless Chromium through Debian's chromium + chromium-driver; absent: a skip, or in CI a failure."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        message = "the browser test needs Debian's chromium and chromium-driver (apt-get install -y ...)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,1500",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_search_page_in_headless_chromium(served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, url = served
    browser = chromium_driver()
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(url)
        button = wait.until(lambda b: b.find_element(By.ID, "search"))
        button.click()  # nothing uploaded: the page says so
        wait.until(lambda b: "no query image" in b.find_element(By.TAG_NAME, "body").text)
        for close in browser.find_elements(By.CSS_SELECTOR, ".toast-close, [data-testid='toast-close']"):
            close.click()
        for letter in "RT":
            upload = browser.find_element(By.CSS_SELECTOR, f"#query-{letter} input[type=file]")
            upload.send_keys(str(root / f"2_1_{letter.lower()}.png"))
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#query-T a, #query-T .file-name")) > 0)
        button.click()
        wait.until(lambda b: "matches" in b.find_element(By.ID, "status").text)
        cells = browser.find_elements(By.CSS_SELECTOR, '#results [role=gridcell][data-col="1"]')
        items = [int(c.text) for c in sorted(cells, key=lambda c: int(c.get_attribute("data-row")))]
        files = (str(root / "2_1_r.png"), "", str(root / "2_1_t.png"))
        assert items == cli_search(root, "cli", *files, camid=0, top_k=10)  # the page's default top-k
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#cams img")) >= 10)  # 2 matches x 5 maps
        # everything the page loaded came from this machine: no CDN, no analytics
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(
            u.startswith(url.rstrip("/")) or u.startswith(("data:", "blob:")) for u in loaded
        )
        shot = Path(os.environ.get("MDREID_SCREENSHOT", tmp_path / "search_page.png"))
        assert browser.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
    finally:
        browser.quit()
