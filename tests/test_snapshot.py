"""Snapshots: round trips through pickle, JSON and torch.load, strict topology, atomic restore."""

from __future__ import annotations

import copy
import io
import json
import pickle
import random
from typing import Any

import numpy as np
import pytest
from conftest import draws, full_state, outside_state_restored, torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deterministic import RNGState, deterministic, restore, snapshot
from deterministic._snapshot import FORMAT_VERSION


def _round_trips(state: RNGState) -> dict[str, RNGState]:
    """The snapshot after each supported serialisation."""
    trips = {
        "none": state,
        "pickle": pickle.loads(pickle.dumps(state)),
        "json": RNGState.from_state_dict(json.loads(json.dumps(state.state_dict()))),
    }
    if torch is not None:
        buffer = io.BytesIO()
        torch.save({"rng": state.state_dict()}, buffer)
        buffer.seek(0)
        trips["torch"] = RNGState.from_state_dict(torch.load(buffer, weights_only=True)["rng"])
    return trips


@pytest.mark.parametrize("trip", ["none", "pickle", "json", "torch"])
def test_round_trip_reproduces_draws(trip: str) -> None:
    """snapshot, draw, restore, draw: the same values, Gaussian caches included."""
    if trip == "torch" and torch is None:
        pytest.skip("torch is not installed")
    with outside_state_restored():
        random.gauss(0, 1)  # leave both Gaussian caches filled
        np.random.randn()
        state = _round_trips(snapshot())[trip]
        first = draws()
        restore(state)
        assert draws() == first


def test_snapshot_equality_and_immutability() -> None:
    """Snapshots compare by value, hash, and cannot be changed through their state dict."""
    first, second = snapshot(), snapshot()
    assert first == second
    assert hash(first) == hash(second)
    data = first.state_dict()
    data["sources"]["random"]["state"][0] ^= 1
    assert first == second
    assert RNGState.from_state_dict(data) != first
    with pytest.raises(AttributeError, match="immutable"):
        first._data = {}  # type: ignore[misc]


def test_state_dict_is_plain_data() -> None:
    """The state dict holds only dict, list, int, float, str, bool and None."""

    def check(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert type(key) is str
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)
        else:
            assert value is None or type(value) in (int, float, str, bool)

    data = snapshot().state_dict()
    check(data)
    assert data["version"] == FORMAT_VERSION


def test_snapshot_inside_scope_holds_scoped_state() -> None:
    """A snapshot taken in a scope restores the scoped stream, inside or outside a scope."""
    before = full_state()
    with deterministic(3):
        draws()
        state = snapshot()
        expected = draws()
    with outside_state_restored():
        restore(state)
        assert draws() == expected
    assert full_state() == before


def test_selected_sources_only() -> None:
    """snapshot(sources=...) captures only the named sources; restore leaves the rest alone."""
    with outside_state_restored():
        state = snapshot(sources=("random",))
        assert state.sources == ("random",)
        expected_random = random.random()
        numpy_before = np.random.get_state()[1].tolist()
        restore(state)
        assert random.random() == expected_random
        assert np.random.get_state()[1].tolist() == numpy_before


def test_bad_sources_argument() -> None:
    """snapshot() rejects unknown source names like a scope does."""
    with pytest.raises(ValueError, match="unknown source 'bogus'"):
        snapshot(sources=("bogus",))


def test_restore_rejects_other_types() -> None:
    """restore() takes only an RNGState, with a clear TypeError."""
    with pytest.raises(TypeError, match="RNGState"):
        restore({"format": "x"})  # type: ignore[arg-type]


def _mutations() -> list[tuple[str, Any]]:
    def truncated(d: dict[str, Any]) -> None:
        d["sources"]["random"]["state"].pop()

    def float_word(d: dict[str, Any]) -> None:
        d["sources"]["numpy"]["key"][5] = 1.5

    def big_word(d: dict[str, Any]) -> None:
        d["sources"]["numpy"]["key"][0] = 2**32

    def negative_pos(d: dict[str, Any]) -> None:
        d["sources"]["numpy"]["pos"] = -1

    def bad_index(d: dict[str, Any]) -> None:
        d["sources"]["random"]["state"][-1] = 625

    def string_gauss(d: dict[str, Any]) -> None:
        d["sources"]["random"]["gauss_next"] = "0.5"

    def newer(d: dict[str, Any]) -> None:
        d["version"] = FORMAT_VERSION + 1

    def unknown_source_not_plain(d: dict[str, Any]) -> None:
        d["sources"]["cupy"] = {"state": (1, 2)}

    def extra_key(d: dict[str, Any]) -> None:
        d["extra"] = 1

    def bool_pos(d: dict[str, Any]) -> None:
        d["sources"]["numpy"]["pos"] = True

    def rank_without_world(d: dict[str, Any]) -> None:
        d["rank"] = 0

    mutations = [truncated, float_word, big_word, negative_pos, bad_index, string_gauss, newer]
    mutations += [unknown_source_not_plain, extra_key, bool_pos, rank_without_world]
    if torch is not None:

        def bad_hex(d: dict[str, Any]) -> None:
            d["sources"]["torch"]["state"] = "zz"

        mutations.append(bad_hex)
    return [(m.__name__, m) for m in mutations]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[n for n, _ in _mutations()])
def test_bad_state_dicts_rejected(name: str, mutate: Any) -> None:
    """Malformed state dicts raise ValueError naming the field, and no RNG changes."""
    with outside_state_restored():
        np.random.rand()  # numpy.random must be in the snapshot
        data = snapshot().state_dict()
    mutate(data)
    before = full_state()
    with pytest.raises(ValueError, match=r"state_dict"):
        RNGState.from_state_dict(data)
    assert full_state() == before


@settings(max_examples=50, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_random_documents_rejected(document: object) -> None:
    """Arbitrary JSON-like documents are rejected with ValueError and touch nothing."""
    before = full_state()
    with pytest.raises(ValueError):
        RNGState.from_state_dict(document)
    assert full_state() == before


def test_wrong_size_torch_state_is_refused_when_loading() -> None:
    """A torch state of the wrong size is a ValueError naming the field at from_state_dict."""
    if torch is None:
        pytest.skip("torch is not installed")
    with outside_state_restored():
        np.random.rand()
        data = snapshot().state_dict()
    data["sources"]["torch"]["state"] = "00" * 10
    before = full_state()
    with pytest.raises(ValueError, match=r"state_dict\.sources\.torch\.state has 10 bytes"):
        RNGState.from_state_dict(data)
    assert full_state() == before


def test_failed_install_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """If installing fails part-way, sources already installed are rolled back."""
    from deterministic._sources import SOURCES

    with outside_state_restored():
        np.random.rand()
        target = snapshot(sources=("random", "numpy"))
        random.random()
        np.random.rand()
        before = full_state()

        def broken(state: Any) -> None:
            raise OSError("disk on fire")

        monkeypatch.setattr(SOURCES["numpy"], "restore", broken)
        with pytest.raises(OSError, match="disk on fire") as raised:
            restore(target)
        # The broken source cannot be rolled back either; that is reported on the error.
        assert any("rolling back also failed" in note for note in raised.value.__notes__)
        monkeypatch.undo()
        assert full_state() == before


def test_unavailable_source_strict_and_lenient() -> None:
    """A source missing here is an error under strict, and a warning that skips it otherwise."""
    with outside_state_restored():
        np.random.rand()
        data = snapshot(sources=("random", "numpy")).state_dict()
    data["devices"] = {"cuda": 1}
    data["sources"]["cuda"] = {"devices": ["00" * 16]}
    state = RNGState.from_state_dict(data)
    before = full_state()
    if torch is None or not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' is not available"):
            restore(state)
        assert full_state() == before
        with outside_state_restored():
            expected = random.random()
            random.random()
            with pytest.warns(RuntimeWarning, match="'cuda' is not available"):
                restore(state, strict=False)
            restored = snapshot(sources=("random",))
        assert restored.state_dict()["sources"]["random"] == data["sources"]["random"]
        del expected


def test_copy_is_equal() -> None:
    """copy.copy and copy.deepcopy give equal snapshots."""
    state = snapshot()
    assert copy.copy(state) == state
    assert copy.deepcopy(state) == state


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace torch.cuda by a two-device double for one test."""
    if torch is None:
        pytest.skip("torch is not installed")
    from cuda_double import FakeCudaModule

    fake = FakeCudaModule(count=2)
    monkeypatch.setattr(torch, "cuda", fake)
    return fake


def test_uninitialised_devices_not_captured(fake_cuda: Any) -> None:
    """A snapshot never initialises a device: uninitialised CUDA is simply left out."""
    state = snapshot()
    assert "cuda" not in state.sources
    assert not fake_cuda.is_initialized()


def test_device_states_round_trip(fake_cuda: Any) -> None:
    """Every initialised device's state is captured and restored."""
    fake_cuda.init()
    state = _round_trips(snapshot())["json"]
    assert state.devices == {"cuda": 2}
    first = fake_cuda.draw_all()
    with outside_state_restored():
        restore(state)
    assert fake_cuda.draw_all() == first


def test_device_count_mismatch(fake_cuda: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A different device count is an error under strict; lenient restores the shared devices."""
    from cuda_double import FakeCudaModule

    fake_cuda.init()
    state = snapshot(sources=("cuda",))
    expected = fake_cuda.draw_all()
    bigger = FakeCudaModule(count=3)
    bigger.init()
    monkeypatch.setattr(torch, "cuda", bigger)
    with pytest.raises(ValueError, match="the snapshot has 2 devices, this process has 3"):
        restore(state)
    third = bigger.default_generators[2].get_state()
    with pytest.warns(RuntimeWarning, match="2 devices"):
        restore(state, strict=False)
    assert torch.equal(bigger.default_generators[2].get_state(), third)
    assert [bigger.draw(0), bigger.draw(1)] == expected[:2]


def test_restore_initialises_device_when_needed(fake_cuda: Any) -> None:
    """Restoring device states into an uninitialised device initialises it first."""
    fake_cuda.init()
    state = snapshot(sources=("cuda",))
    expected = fake_cuda.draw_all()
    from cuda_double import FakeCudaModule

    fresh = FakeCudaModule(count=2)
    torch.cuda = fresh  # the fixture's monkeypatch restores the real module
    restore(state)
    assert fresh.is_initialized()
    assert fresh.draw_all() == expected


@pytest.mark.cuda
@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_device_states_round_trip() -> None:
    """Real CUDA: every device's state survives snapshot, torch.save/load and restore."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import io, torch
        from deterministic import RNGState, restore, snapshot
        torch.cuda.init()
        n = torch.cuda.device_count()
        state = snapshot()
        buffer = io.BytesIO(); torch.save(state.state_dict(), buffer); buffer.seek(0)
        loaded = RNGState.from_state_dict(torch.load(buffer, weights_only=True))
        first = [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        restore(loaded)
        again = [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        print(state.devices == {"cuda": n}, first == again)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"


def test_snapshot_with_a_source_this_process_lacks() -> None:
    """A snapshot naming an unregistered source loads; strict restore refuses it, lenient skips it."""
    from deterministic import register_source, unregister_source

    box = {"state": [1, 2]}
    register_source("counter", lambda: list(box["state"]), lambda s: None, lambda s: box.update(state=s))
    try:
        data = snapshot(sources=("random", "counter")).state_dict()
    finally:
        unregister_source("counter")
    loaded = RNGState.from_state_dict(json.loads(json.dumps(data)))
    assert loaded.state_dict() == data  # kept as opaque plain data: it round-trips
    assert "counter" in loaded.sources
    before = full_state()
    with pytest.raises(ValueError, match="'counter' is not registered"):
        restore(loaded)
    assert full_state() == before
    with outside_state_restored():
        random.random()
        with pytest.warns(RuntimeWarning, match="'counter' is not registered"):
            restore(loaded, strict=False)
        assert snapshot(sources=("random",)).state_dict()["sources"]["random"] == data["sources"]["random"]
    # Registered again later: validated and installed at restore.
    register_source("counter", lambda: list(box["state"]), lambda s: None, lambda s: box.update(state=s))
    try:
        box["state"] = [9]
        with outside_state_restored():
            restore(loaded)
        assert box["state"] == [1, 2]
    finally:
        unregister_source("counter")


def test_snapshot_is_immutable_after_from_state_dict() -> None:
    """Mutating the dict given to from_state_dict changes neither the snapshot nor what restore installs."""
    from deterministic import register_source, unregister_source

    box: dict[str, Any] = {"state": {"values": [1, 2]}}
    register_source("nested", lambda: box["state"], lambda s: None, lambda s: box.update(state=s))
    try:
        data = snapshot(sources=("nested",)).state_dict()
        loaded = RNGState.from_state_dict(data)
        key = hash(loaded)
        data["sources"]["nested"]["state"]["values"].append(3)
        assert loaded.state_dict()["sources"]["nested"]["state"] == {"values": [1, 2]}
        assert hash(loaded) == key
        box["state"] = {"values": []}
        restore(loaded)
        assert box["state"] == {"values": [1, 2]}
    finally:
        unregister_source("nested")


def test_fresh_process_restores_numpy_before_numpy_random_is_imported(tmp_path: Any) -> None:
    """restore() imports numpy.random (and torch) when the snapshot needs them, as a resumed run expects."""
    import subprocess
    import sys
    import textwrap

    with outside_state_restored():
        np.random.rand()
        state = snapshot()
        expected = (np.random.rand(3).tolist(), random.random())
    path = tmp_path / "rng.json"
    path.write_text(json.dumps(state.state_dict()))
    code = f"""
        import json, random, sys
        import numpy
        {"import torch" if torch is not None else ""}
        from deterministic import RNGState, restore
        print("numpy.random" in sys.modules)
        restore(RNGState.from_state_dict(json.loads(open({str(path)!r}).read())))
        import numpy.random
        print(json.dumps([numpy.random.rand(3).tolist(), random.random()]))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded_before, draws_after = result.stdout.splitlines()
    assert loaded_before == "False"  # the situation of a resumed run: nothing drew from NumPy yet
    assert tuple(json.loads(draws_after)) == expected


def test_int_gauss_next_round_trips() -> None:
    """An int gauss_next (which random.setstate accepts) survives a snapshot round trip."""
    with outside_state_restored():
        version, internal, _ = random.getstate()
        random.setstate((version, internal, 5))
        data = json.loads(json.dumps(snapshot(sources=("random",)).state_dict()))
        assert data["sources"]["random"]["gauss_next"] == 5
        random.random()
        restore(RNGState.from_state_dict(data))
        assert random.getstate()[2] == 5
        assert random.gauss(0, 1) == 5


@pytest.mark.torch
def test_invalid_torch_bytes_are_refused_when_loading() -> None:
    """Torch state bytes of the right length that torch refuses are a ValueError at from_state_dict."""
    if torch is None:
        pytest.skip("torch is not installed")
    data = snapshot(sources=("torch",)).state_dict()
    size = len(bytes.fromhex(data["sources"]["torch"]["state"]))
    data["sources"]["torch"]["state"] = "00" * size
    before = full_state()
    with pytest.raises(ValueError, match=r"state_dict\.sources\.torch\.state is not a state torch accepts"):
        RNGState.from_state_dict(data)
    assert full_state() == before


@pytest.mark.torch
def test_hex_with_whitespace_and_upper_case_is_normalised() -> None:
    """Hex with whitespace or upper case loads to the same snapshot as its canonical form."""
    if torch is None:
        pytest.skip("torch is not installed")
    data = snapshot(sources=("torch",)).state_dict()
    canonical = RNGState.from_state_dict(data)
    text = data["sources"]["torch"]["state"]
    data["sources"]["torch"]["state"] = " ".join(text[i : i + 2] for i in range(0, len(text), 2)).upper()
    assert RNGState.from_state_dict(data) == canonical
