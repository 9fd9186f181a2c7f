"""The IDX reader: valid files of every type, plain and gzip, and every kind of broken file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeflow.data import IdxError, read_idx, write_idx
from spikeflow.data.idx import IDX_TYPES

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _valid_bytes() -> bytes:
    return _header(0x08, (3, 4, 5)) + np.arange(60, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        data = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True, dtype=dtype)
    else:
        data = rng.standard_normal((3, 4, 5)).astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), data)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5) and out.flags.writeable
    np.testing.assert_array_equal(out, data)
    torch.testing.assert_close(torch.from_numpy(out), torch.from_numpy(data))


def test_known_bytes_big_endian(tmp_path):
    """Decoding does not depend on write_idx: hand-made big-endian int16/float32 files."""
    path = tmp_path / "s.idx"
    path.write_bytes(_header(0x0B, (3,)) + struct.pack(">3h", 1, -2, 300))
    np.testing.assert_array_equal(read_idx(path), np.array([1, -2, 300], dtype=np.int16))
    path.write_bytes(_header(0x0D, (2,)) + struct.pack(">2f", 1.5, -0.25))
    np.testing.assert_array_equal(read_idx(path), np.array([1.5, -0.25], dtype=np.float32))


def test_gzip_detected_from_content_not_suffix(tmp_path):
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    gz_without_suffix = write_idx(tmp_path / "plainname", data, compress=True)
    plain_with_suffix = write_idx(tmp_path / "x.gz", data, compress=False)
    np.testing.assert_array_equal(read_idx(gz_without_suffix), data)
    np.testing.assert_array_equal(read_idx(plain_with_suffix), data)


@pytest.mark.parametrize("shape", [(), (0,), (5, 0, 3), (1,) * 12])
def test_edge_shapes(tmp_path, shape):
    data = np.zeros(shape, dtype=np.float64) + 7.0
    out = read_idx(write_idx(tmp_path / "e.idx", data))
    assert out.shape == shape
    np.testing.assert_array_equal(out, data)


def test_write_idx_takes_tensors_and_refuses_other_dtypes(tmp_path):
    t = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "t.idx", t)), t.numpy())
    with pytest.raises(ValueError, match="cannot store dtype int64"):
        write_idx(tmp_path / "bad.idx", np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------- broken files


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such IDX file: .*nothing-here.idx"):
        read_idx(tmp_path / "nothing-here.idx")


def test_directory_is_refused(tmp_path):
    with pytest.raises(IdxError, match="not a regular file"):
        read_idx(tmp_path)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_bad_magic(tmp_path, compress):
    payload = b"\x01\x00" + _valid_bytes()[2:]
    path = tmp_path / "m.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(IdxError, match=r"m\.idx: not an IDX file: magic starts with 0x01 0x00"):
        read_idx(path)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 2) + b"ab")
    with pytest.raises(IdxError, match=r"t\.idx: unknown IDX type code 0x0A"):
        read_idx(path)


@pytest.mark.parametrize("size", [0, 1, 3])
def test_too_short_for_a_header(tmp_path, size):
    path = tmp_path / "short.idx"
    path.write_bytes(b"\x00" * size)
    with pytest.raises(IdxError, match=r"short\.idx: too short for an IDX header"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_truncated_header_sizes(tmp_path, compress):
    payload = bytes([0, 0, 0x08, 3]) + struct.pack(">I", 5)  # 3 dims, one size
    path = tmp_path / "h.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(IdxError, match=r"h\.idx: truncated header: 3 dimensions need 12 bytes"):
        read_idx(path)


def test_truncated_plain_data(tmp_path):
    path = tmp_path / "cut.idx"
    path.write_bytes(_valid_bytes()[:-7])
    with pytest.raises(IdxError, match=r"cut\.idx: truncated or oversized header: .*holds 53"):
        read_idx(path)


def test_truncated_gzip_data(tmp_path):
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(gzip.compress(_valid_bytes()[:-7]))
    with pytest.raises(IdxError, match=r"cut\.idx\.gz: truncated: .*decompressed file holds 53"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_trailing_garbage(tmp_path, compress):
    payload = _valid_bytes() + b"junk"
    path = tmp_path / "tail.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(IdxError, match=r"tail\.idx: (4 )?trailing bytes"):
        read_idx(path)


def test_absurd_sizes_plain_refused_without_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.idx"
    path.write_bytes(_header(0x0E, (2**32 - 1,) * 3) + b"\x00" * 16)
    calls = []
    import spikeflow.data.idx as idx_module

    real = idx_module._read_exact
    monkeypatch.setattr(idx_module, "_read_exact", lambda h, n: calls.append(n) or real(h, n))
    pattern = r"huge\.idx: truncated or oversized header: .* the file holds 16"
    with pytest.raises(IdxError, match=pattern):
        read_idx(path)
    assert max(calls) <= 12  # only the header was read


def test_absurd_sizes_gzip_refused_before_decompressing(tmp_path):
    path = tmp_path / "huge.idx.gz"
    path.write_bytes(gzip.compress(_header(0x08, (2**32 - 1,) * 4)))
    pattern = r"huge\.idx\.gz: header declares .* more than a gzip file of this size can hold"
    with pytest.raises(IdxError, match=pattern):
        read_idx(path)


def test_gzip_claim_within_deflate_bound_reads_only_what_is_there(tmp_path):
    # 50 MB claimed by a ~50 kB file: plausible for deflate, but the stream ends
    # after 50 kB; fails as truncated having decompressed only what is there.
    filler = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    path = tmp_path / "lie.idx.gz"
    path.write_bytes(gzip.compress(_header(0x08, (50_000_000,)) + filler))
    with pytest.raises(IdxError, match=r"lie\.idx\.gz: truncated: .*50000000 bytes.*holds 50000$"):
        read_idx(path)


def test_empty_array_with_absurd_other_sizes(tmp_path):
    path = tmp_path / "zero.idx"
    path.write_bytes(_header(0x08, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)))
    with pytest.raises(IdxError, match=r"zero\.idx: header declares .* NumPy cannot represent"):
        read_idx(path)


def test_corrupt_gzip_stream(tmp_path):
    payload = gzip.compress(_header(0x08, (512,)) + bytes(range(256)) * 2)
    broken = bytearray(payload)
    broken[-6] ^= 0xFF  # inside the CRC32 trailer
    path = tmp_path / "crc.idx.gz"
    path.write_bytes(bytes(broken))
    with pytest.raises(IdxError, match=r"crc\.idx\.gz: corrupt gzip stream"):
        read_idx(path)
    path.write_bytes(payload[: len(payload) // 2])  # gzip cut in the middle
    with pytest.raises(IdxError, match=r"crc\.idx\.gz: (corrupt gzip stream|truncated)"):
        read_idx(path)
    path.write_bytes(b"\x1f\x8b" + b"\xff" * 40)  # gzip magic, garbage after it
    with pytest.raises(IdxError, match=r"crc\.idx\.gz: corrupt gzip stream"):
        read_idx(path)


# ---------------------------------------------------------------- fuzzing

_FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _expect_idx_error_or_result(path):
    try:
        out = read_idx(path)
    except IdxError as error:
        assert str(error).startswith(str(path))
        return None
    assert isinstance(out, np.ndarray)
    return out


@_FUZZ
@given(data=st.binary(max_size=300), gz_magic=st.booleans(), idx_magic=st.booleans())
def test_fuzz_random_bytes(tmp_path, data, gz_magic, idx_magic):
    if idx_magic:
        data = b"\x00\x00" + data
    if gz_magic:
        data = b"\x1f\x8b" + data
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    _expect_idx_error_or_result(path)


@_FUZZ
@given(
    dtype=st.sampled_from(DTYPES),
    compress=st.booleans(),
    cut=st.integers(min_value=0, max_value=10_000),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(1, 255))),
)
def test_fuzz_truncated_or_flipped_valid_file(tmp_path, dtype, compress, cut, flip):
    data = (np.arange(24) % 100).astype(dtype).reshape(2, 3, 4)
    full = write_idx(tmp_path / "v.idx", data, compress=compress).read_bytes()
    blob = bytearray(full[: cut % (len(full) + 1)])
    if flip is not None and blob:
        blob[flip[0] % len(blob)] ^= flip[1]
    path = tmp_path / "v.idx"
    path.write_bytes(bytes(blob))
    out = _expect_idx_error_or_result(path)
    if out is not None and bytes(blob) == full:
        np.testing.assert_array_equal(out, data)
    if out is not None and not compress and flip is None:
        assert len(blob) == len(full)  # a cut plain file never reads as valid


@_FUZZ
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    shape=st.lists(st.sampled_from([0, 1, 2, 3, 7, 2**16, 2**31, 2**32 - 1]), max_size=6),
    body=st.binary(max_size=200),
    compress=st.booleans(),
)
def test_fuzz_random_headers(tmp_path, code, shape, body, compress):
    payload = _header(code, shape) + body
    path = tmp_path / "h.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    out = _expect_idx_error_or_result(path)
    if out is not None:
        assert out.shape == tuple(shape) and out.nbytes == len(body)


def test_type_table_is_the_idx_standard():
    assert {c: d.newbyteorder("=").name for c, d in IDX_TYPES.items()} == {
        0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64",
    }
