"""Loading and saving weights: openai format, CTranslate2, the resolution order, downloads."""
import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

import files
import pretrained
from pretrained import CheckpointError, from_pretrained, load_checkpoint, load_ctranslate2, save_checkpoint

whisper = pytest.importorskip("whisper")


def test_ctranslate2_import_equals_the_openai_format_file(tiny_en_checkpoint):
    from_ct2 = load_ctranslate2(pretrained.bundled_tiny_en()).state_dict()
    from_pt = load_checkpoint(str(tiny_en_checkpoint)).state_dict()
    assert from_ct2.keys() == from_pt.keys()
    for key in from_pt:
        assert torch.equal(from_ct2[key], from_pt[key]), key


def test_ctranslate2_dims_and_alignment_heads():
    model = load_ctranslate2(pretrained.bundled_tiny_en())
    assert model.dims == pretrained.ModelDimensions()  # the defaults are tiny.en's dims
    expected = [(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]  # GUIDE §1
    assert model.alignment_heads == expected
    assert pretrained.alignment_heads("tiny.en", model.dims) == expected


def test_our_checkpoint_loads_strictly_in_the_reference_with_equal_logits(ours, tmp_path):
    path = tmp_path / "ours.pt"
    save_checkpoint(ours, str(path), note="extra keys are ignored by the reference")
    reference = whisper.load_model(str(path), device="cpu")  # load_state_dict is strict there
    mel, tokens = torch.randn(1, 80, 3000), torch.tensor([[50257, 50362, 314, 716]])
    with torch.no_grad():
        assert (ours(mel, tokens) - reference(mel, tokens)).abs().max() <= 1e-4


def test_compiled_or_ddp_prefixes_are_stripped(ours, tmp_path):
    path = tmp_path / "prefixed.pt"
    state = {f"_orig_mod.{k}": v for k, v in ours.state_dict().items()}
    torch.save({"dims": vars(ours.dims), "model_state_dict": state}, path)
    assert load_checkpoint(str(path)).state_dict().keys() == ours.state_dict().keys()


def test_name_resolution_prefers_the_shared_cache(tmp_path, monkeypatch, tiny_en_checkpoint):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = tmp_path / "whisper" / "tiny.en.pt"
    cached.parent.mkdir()
    marked = load_checkpoint(str(tiny_en_checkpoint))
    with torch.no_grad():
        marked.decoder.ln.bias.fill_(0.125)  # a mark that only the cached file has
    save_checkpoint(marked, str(cached))
    monkeypatch.setattr(pretrained, "download", lambda *a, **k: pytest.fail("must not download"))
    assert torch.all(from_pretrained("tiny.en").decoder.ln.bias == 0.125)


def test_name_resolution_falls_back_to_the_bundled_tiny_en(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # empty cache
    monkeypatch.setattr(pretrained, "download", lambda *a, **k: pytest.fail("must not download"))
    model = from_pretrained("tiny.en")
    assert model.dims.n_vocab == 51864 and model.alignment_heads[0] == (1, 0)


@pytest.fixture
def server(tmp_path):
    """An http.server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_with_the_right_sha256_loads(server, tmp_path, monkeypatch, tiny_en_checkpoint):
    root, url = server
    data = tiny_en_checkpoint.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (root / sha).mkdir()
    (root / sha / "tiny.pt").write_bytes(data)
    # an official name whose cache is empty and that has no bundled copy goes to the URL
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "_URL", url + "/{sha256}/{file}")
    monkeypatch.setitem(pretrained.MODELS, "tiny", (sha, "tiny.pt"))
    model = from_pretrained("tiny")
    assert (tmp_path / "cache" / "whisper" / "tiny.pt").read_bytes() == data
    assert model.dims.n_text_layer == 4


def test_download_with_a_wrong_sha256_is_refused_and_leaves_nothing(server, tmp_path):
    root, url = server
    (root / "model.pt").write_bytes(b"x" * 100_000)
    dest = tmp_path / "cache" / "model.pt"
    with pytest.raises(files.DownloadError, match="SHA256") as err:
        files.download(f"{url}/model.pt", str(dest), sha256="0" * 64)
    assert f"{url}/model.pt" in str(err.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_download_of_a_missing_url_is_a_clear_error(server, tmp_path):
    _, url = server
    with pytest.raises(files.DownloadError, match="download failed"):
        files.download(f"{url}/nope.pt", str(tmp_path / "nope.pt"), sha256="0" * 64)
    assert not (tmp_path / "nope.pt").exists()


def test_from_pretrained_reports_a_failed_download_as_a_checkpoint_error(server, tmp_path, monkeypatch):
    _, url = server  # serves nothing: the download of the official name fails
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "_URL", url + "/{sha256}/{file}")
    with pytest.raises(CheckpointError, match="download failed") as err:
        from_pretrained("tiny")
    assert f"{url}/" in str(err.value)


@pytest.mark.parametrize("content,problem", [(b"garbage" * 100, "not a PyTorch checkpoint"),
                                             (None, "not a Whisper checkpoint")])
def test_bad_checkpoints_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as err:
        from_pretrained(path)
    assert str(path) in str(err.value)


def test_unknown_name_and_bare_directory_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not an official model name"):
        from_pretrained("tiny.fr")
    with pytest.raises(CheckpointError, match="without model.bin"):
        from_pretrained(tmp_path)


def test_fp16_and_bf16_load(tiny_en_checkpoint):
    for dtype in (torch.float16, torch.bfloat16):
        model = from_pretrained(tiny_en_checkpoint, dtype=dtype)
        assert model.dtype == dtype and model.encoder.conv1.weight.dtype == dtype
