"""The row count and sum of per-line hashes of text COPY blocks (crc32: the backup's checksum; XXH64:
a data migration's copy sums): the C accelerator and the pure-Python fallback agree with each other
and with the definition (docs/FORMAT.md, ``row_checksum``; the published XXH64)."""

from __future__ import annotations

import random
import re
import shutil
import sysconfig
import threading
import zlib

import pytest

from storagectl import rowsum
from storagectl.rowsum import python_line_crc32_sum
from tests.conftest import IN_CI


def by_definition(data: bytes) -> tuple[int, int]:
    """Every line ending after a newline, newline included, and a last one without it."""
    lines = re.findall(rb"[^\n]*\n|[^\n]+\Z", data)
    return len(lines), sum(zlib.crc32(line) for line in lines)


@pytest.fixture(scope="module")
def accelerated():
    """The C function. Missing: skipped here, a failure under CI=true where a C compiler is found (an
    install silently left on the slow path); built from other source: a failure."""
    if rowsum.EXTENSION != "built":
        message = f"storagectl._rowsum is {rowsum.EXTENSION}: pip install -e . (needs a C compiler)"
        compiler = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])
        if (IN_CI and compiler) or rowsum.EXTENSION == "stale":
            pytest.fail(message)
        pytest.skip(message)
    return rowsum.line_crc32_sum


def copy_like(rng: random.Random, rows: int) -> bytes:
    """Rows of tab-separated fields as text COPY writes them, some with bytes COPY escapes or never
    sends (carriage returns, high bytes, NUL), some empty."""
    alphabet = b"0123456789abc\\\t\r\x00\x80\xe9\xff -N"
    return b"".join(bytes(rng.choices(alphabet, k=rng.randrange(0, 40))) + b"\n" for _ in range(rows))


CASES = [b"", b"\n", b"\n\n\n", b"no newline", b"a\nb", b"1\t2\n3\t4\n", b"\r\n", b"a\rb\n", b"\r", b"x\r\r\ny\r",
         b"\\N\t\xff\xfe\n\x80\n", b"\x00\n\x00"]


@pytest.mark.parametrize("data", CASES)
def test_python_sums_follow_the_definition(data):
    assert python_line_crc32_sum(data) == by_definition(data)


@pytest.mark.parametrize("data", CASES)
def test_c_sums_follow_the_definition(accelerated, data):
    assert accelerated(data) == by_definition(data)


@pytest.mark.parametrize("seed", range(20))
def test_c_and_python_agree_on_copy_like_blocks(accelerated, seed):
    rng = random.Random(seed)
    data = copy_like(rng, rng.randrange(0, 3000))
    cut = rng.randrange(0, len(data) + 1)  # also blocks cut anywhere, not after a newline
    for block in (data, data[:cut], data[cut:]):
        assert accelerated(block) == python_line_crc32_sum(block) == by_definition(block)


def test_c_and_python_agree_on_multi_megabyte_blocks(accelerated):
    rng = random.Random(7)
    rows = b"".join(f"{rng.getrandbits(31)}\t{rng.getrandbits(20)}\n".encode() for _ in range(400_000))
    long_rows = copy_like(rng, 100) * 2000 + bytes(rng.getrandbits(8) for _ in range(1 << 20)).replace(b"\n", b"")
    for data in (rows, long_rows, long_rows + b"\n"):
        assert len(data) > 4 << 20
        assert accelerated(data) == python_line_crc32_sum(data)


def test_c_reads_any_contiguous_buffer(accelerated):
    data = b"1\t2\n3\t\xff\r\n"
    assert accelerated(bytearray(data)) == accelerated(memoryview(data)) == python_line_crc32_sum(data)
    assert accelerated(memoryview(b"xx" + data)[2:]) == python_line_crc32_sum(data)
    with pytest.raises(TypeError):
        accelerated("text")
    with pytest.raises(BufferError):
        accelerated(memoryview(data)[::2])


def test_c_sums_blocks_in_threads_alike(accelerated):
    """The GIL is released while a block is summed: threads summing at once get their own sums."""
    blocks = [copy_like(random.Random(seed), 20_000) for seed in range(4)]
    expected = [python_line_crc32_sum(block) for block in blocks]
    results: dict[int, list] = {}

    def run(index: int) -> None:
        results[index] = [accelerated(blocks[index]) for _ in range(5)]

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(blocks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[index] for index in range(len(blocks))] == [[sums] * 5 for sums in expected]


def test_copy_reader_sums_with_the_accelerator_where_it_is_built(accelerated):
    from storagectl.backends.postgres import copy

    assert copy.line_crc32_sum is accelerated


def test_a_build_of_other_source_is_not_used(accelerated, tmp_path, monkeypatch):
    """A checkout edited since its last build sums in Python rather than with the stale build."""
    monkeypatch.setattr(rowsum, "__file__", str(tmp_path / "rowsum.py"))
    (tmp_path / "_rowsum.c").write_bytes(b"/* edited */")
    assert rowsum._load() == ("stale", python_line_crc32_sum, rowsum.python_line_xxh64_sum,
                              rowsum.python_line_xxh64_sum_doubles)
    (tmp_path / "_rowsum.c").unlink()  # a build without its source beside it
    assert rowsum._load()[:2] == ("built", accelerated)


def doubles_like(rng: random.Random, rows: int) -> bytes:
    """Rows whose 2nd and 4th fields are mostly numbers, spelled as SQLite or PostgreSQL would, or not."""
    spellings = [lambda x: repr(x), lambda x: f"{x:.17g}", lambda x: f"{x:.17e}", lambda x: "\\N", lambda x: "NaN",
                 lambda x: "-Infinity", lambda x: f" {x}", lambda x: f"{x} ", lambda x: "0x1p3", lambda x: "1_0",
                 lambda x: ".5", lambda x: "-0", lambda x: "5.", lambda x: "", lambda x: "1e999", lambda x: "abc"]
    lines = []
    for _ in range(rows):
        x = rng.random() * 10 ** rng.uniform(-300, 300) * rng.choice([1, -1])
        fields = [str(rng.randrange(100)), rng.choice(spellings)(x), "t\\tx", rng.choice(spellings)(x)]
        lines.append("\t".join(fields[:rng.randrange(1, 5)]).encode())
    return b"\n".join(lines) + rng.choice([b"", b"\n"])


XXH64_VECTORS = {  # published values (python-xxhash's documentation, other implementations' tests)
    b"": 0xEF46DB3751D8E999, b"a": 0xD24EC4F1A98C6E5B, b"abc": 0x44BC2CF5AD770999,
    b"1234": 0xD8316E61D84F6BA4, b"12345678": 0xD2D02F08CF7CFD4A, b"123456789012345": 0xC377D78ADE001A3C,
    b"a" * 32: 0x856E843298F99AD7, b"Nobody inspects the spammish repetition": 0xFBCEA83C8A378BF1,
    b"The quick brown fox jumps over the lazy dog": 0x0B242D361FDA71BC,
}


def xxh64_by_definition(data: bytes) -> tuple[int, int]:
    lines = re.findall(rb"[^\n]*\n|[^\n]+\Z", data)
    return len(lines), sum(map(rowsum.xxh64, lines)) % 2**64


@pytest.mark.parametrize("data", list(XXH64_VECTORS))
def test_xxh64_is_the_published_one_in_c_and_python(accelerated, data):
    assert rowsum.xxh64(data) == XXH64_VECTORS[data]
    assert rowsum.line_xxh64_sum(data) == ((1, XXH64_VECTORS[data]) if data else (0, 0))


def test_c_and_python_xxh64_agree_on_every_length_and_on_copy_like_blocks(accelerated):
    """Every tail the hash has (stripes of 32, words of 8, 4 bytes, single bytes), lines cut anywhere."""
    rng = random.Random(11)
    for size in range(200):
        line = rng.randbytes(size).replace(b"\n", b"")
        assert rowsum.line_xxh64_sum(line) == rowsum.python_line_xxh64_sum(line) == xxh64_by_definition(line)
    for seed in range(10):
        rng = random.Random(seed)
        data = copy_like(rng, rng.randrange(0, 3000))
        cut = rng.randrange(0, len(data) + 1)
        for block in (data, data[:cut], data[cut:], data + b"x" * 100):
            assert rowsum.line_xxh64_sum(block) == rowsum.python_line_xxh64_sum(block) == xxh64_by_definition(block)
    for case in CASES:
        assert rowsum.line_xxh64_sum(case) == rowsum.python_line_xxh64_sum(case) == xxh64_by_definition(case)


def test_c_xxh64_sums_blocks_in_threads_alike(accelerated):
    """Above 16 KiB the GIL is released: threads summing at once get their own sums."""
    blocks = [copy_like(random.Random(seed), 2_000) for seed in range(4)]
    expected = [rowsum.python_line_xxh64_sum(block) for block in blocks]
    results: dict[int, list] = {}

    def run(index: int) -> None:
        results[index] = [rowsum.line_xxh64_sum(blocks[index]) for _ in range(50)]

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(blocks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(block) > 16384 for block in blocks)
    assert [results[index] for index in range(len(blocks))] == [[sums] * 50 for sums in expected]


def test_a_changed_byte_changes_the_xxh64_sum_and_the_sum_ignores_line_order():
    rng = random.Random(5)
    data = copy_like(rng, 500)
    lines = rowsum.python_lines(data)
    rng.shuffle(lines)
    assert rowsum.line_xxh64_sum(b"".join(lines)) == rowsum.line_xxh64_sum(data)
    for at in rng.sample([i for i, byte in enumerate(data) if byte != ord("\n")], 50):
        changed = data[:at] + bytes([data[at] ^ 1 << rng.randrange(8)]) + data[at + 1:]
        assert rowsum.line_xxh64_sum(changed) != rowsum.line_xxh64_sum(data)


@pytest.mark.parametrize("seed", range(10))
def test_c_and_python_sum_double_fields_alike(accelerated, seed):
    rng = random.Random(seed)
    data = doubles_like(rng, rng.randrange(1, 2000))
    for columns in (b"\x00\x01\x00\x01", b"\x01", b"\x01\x01\x01\x01\x01", b""):
        c_sums = rowsum.line_xxh64_sum_doubles(data, columns)
        assert c_sums == rowsum.python_line_xxh64_sum_doubles(data, columns)
        assert c_sums[0] == xxh64_by_definition(data)[0]
    assert rowsum.line_xxh64_sum_doubles(data, b"") == xxh64_by_definition(data)  # no double column: plain sums


def test_a_double_sums_alike_in_sqlite_and_postgresql_spelling_and_otherwise_for_another():
    rng = random.Random(3)
    values = [rng.random() * 10 ** rng.uniform(-80, 80) for _ in range(2000)] + [0.1, 100.0, 1e15, 1e-5, 2.0 ** 53]
    sqlite = b"".join(b"%d\t%s\n" % (i, b"%.17g" % x) for i, x in enumerate(values))  # 17 digits
    postgres = b"".join(b"%d\t%s\n" % (i, repr(x).encode()) for i, x in enumerate(values))  # the shortest
    for line_sums in (rowsum.line_xxh64_sum_doubles, rowsum.python_line_xxh64_sum_doubles):
        assert line_sums(sqlite, b"\x00\x01") == line_sums(postgres, b"\x00\x01")
        assert line_sums(sqlite, b"\x00\x00") != line_sums(postgres, b"\x00\x00")
        nudged = b"0\t%s\n" % repr(values[0] + values[0] * 2 ** -52).encode() + postgres.split(b"\n", 1)[1]
        assert line_sums(nudged, b"\x00\x01") != line_sums(postgres, b"\x00\x01")  # one ulp off
