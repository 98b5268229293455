"""Instructions per kernel: the qemu plugin's per-block counts (``symbols=PATH``) resolved to the functions
they ran in, per inference, net of the harness.

The plugin writes, at every end marker, the translated blocks that ran since the begin marker (guest address,
instructions executed, and qemu's own symbol for the block, which qemu knows only for the ELF images it
loaded itself: the program and its dynamic loader), and once the guest's file mappings. A block's address
is resolved here: the mapping that holds it gives the file and the offset, the file's program headers
give its ELF address, and the file's symbol table (``.symtab``, else ``.dynsym``) the function. A
stripped library (onnxruntime's wheels keep only exported names) still has ``.eh_frame_hdr``, the table of
every function with unwind information: such a function is named ``<library>+0x<start>``, stable for one
build of the library. Hand-written assembly kernels (MLAS's) often have no unwind entry and lie past the end
of the function before them; there a kernel is taken to start after the last ``ret`` before the address.
Every block lands in exactly one function, so the per-kernel figures add up to the inference's count.

Each kernel also gets its multiply-accumulate instructions by kind, decoded from the executed blocks' bytes
(``macs``): ``dot`` (SDOT/UDOT, 4 int8 products per 32-bit lane), ``mmla`` (SMMLA/UMMLA/USMMLA), ``fmla``
(floating-point fused multiply-add), ``int_mla`` (MLA, SMLAL/UMLAL, SADALP/UADALP), ``int_mull``
(SMULL/UMULL): what tells a dot-product kernel from a widening one without a symbol.
"""

from __future__ import annotations

import mmap
import shutil
import statistics
import struct
import subprocess
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: kernels listed per profile entry; the rest are summed into one "(other)" row
SHOWN_KERNELS = 25
OTHER = "(other)"


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int
    path: str


@dataclass
class BlockCounts:
    """Per marker interval, the instructions each block (by guest address) executed; the file mappings."""

    intervals: list[dict[tuple[int, int], int]] = field(default_factory=list)  # (address, instructions) -> executed
    qemu_names: dict[int, str] = field(default_factory=dict)
    maps: list[Mapping] = field(default_factory=list)


def read_block_counts(path: Path) -> BlockCounts:
    counts = BlockCounts()
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        words = line.split(maxsplit=4 if line.startswith("map ") else 3)
        if not words:
            continue
        if words[0] == "interval":
            counts.intervals.append({})
        elif words[0] == "map" and len(words) == 5:
            counts.maps.append(Mapping(int(words[1], 16), int(words[2], 16), int(words[3], 16), words[4]))
        elif len(words) == 4 and counts.intervals:
            vaddr, block = int(words[0], 16), (int(words[0], 16), int(words[1]))
            counts.intervals[-1][block] = counts.intervals[-1].get(block, 0) + int(words[2])
            if words[3] != "-":
                counts.qemu_names[vaddr] = words[3]
    counts.maps.sort(key=lambda mapping: mapping.start)
    return counts


class ElfFunctions:
    """Function starts and names of one ELF file (64-bit little-endian: aarch64 Linux)."""

    def __init__(self, path: str):
        self.segments: list[tuple[int, int, int]] = []  # (file offset, size in file, ELF address)
        self.starts: list[int] = []
        self.names: list[str | None] = []
        self.ends: list[int | None] = []  # a function's end where the symbol or its unwind entry says
        self.data = b""
        try:
            with open(path, "rb") as file:
                self.data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            if self.data[:6] == b"\x7fELF\x02\x01":
                self._read(self.data)
        except (OSError, ValueError, struct.error):
            pass

    def _read(self, data) -> None:
        phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
        for index in range(phnum):
            kind, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + index * phentsize)
            if kind == 1:  # PT_LOAD
                self.segments.append((offset, filesz, vaddr))
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + index * shentsize) for index in range(shnum)]
        names_at = sections[shstrndx][4] if shstrndx < len(sections) else 0
        by_name = {_c_string(data, names_at + section[0]): section for section in sections}
        table = by_name.get(".symtab") or by_name.get(".dynsym")
        functions: dict[int, tuple[str | None, int | None]] = {}
        if table is not None:
            strings = sections[table[6]][4]
            for at in range(table[4], table[4] + table[5], 24):
                name_at, info, _, shndx, value, size = struct.unpack_from("<IBBHQQ", data, at)
                if info & 0xF == 2 and shndx and value:  # STT_FUNC, defined
                    functions.setdefault(value, (_c_string(data, strings + name_at), value + size if size else None))
        header = by_name.get(".eh_frame_hdr")
        if header is not None:
            for start, size in _eh_frame_ranges(data, header[4], header[3], self.file_offset):
                name, end = functions.get(start, (None, None))
                functions[start] = (name, end or start + size)
        self.starts = sorted(functions)
        self.names = [functions[start][0] for start in self.starts]
        self.ends = [functions[start][1] for start in self.starts]

    def elf_address(self, file_offset: int) -> int | None:
        for offset, size, vaddr in self.segments:
            if offset <= file_offset < offset + size:
                return file_offset - offset + vaddr
        return None

    def file_offset(self, address: int) -> int | None:
        for offset, size, vaddr in self.segments:
            if vaddr <= address < vaddr + size:
                return address - vaddr + offset
        return None

    def words(self, address: int, count: int) -> tuple[int, ...]:
        """``count`` 32-bit instruction words at ``address`` (empty when outside the file)."""
        offset = self.file_offset(address)
        if offset is None or offset + 4 * count > len(self.data):
            return ()
        return struct.unpack_from(f"<{count}I", self.data, offset)

    def function(self, address: int) -> tuple[int, str | None] | None:
        """(start, name or None) of the function that holds ``address``."""
        position = bisect_right(self.starts, address) - 1
        if position < 0:
            return None
        start, end = self.starts[position], self.ends[position]
        if end is not None and address >= end:  # past the function's end: code with no symbol or unwind entry
            return self._after_last_ret(address, end), None
        return start, self.names[position]

    def _after_last_ret(self, address: int, floor: int) -> int:
        """The first instruction after the last ``ret`` (and its padding) before ``address``, not below ``floor``."""
        start = address
        while start - 4 >= floor and self.words(start - 4, 1) not in ((), (RET,)):
            start -= 4
        while start < address and self.words(start, 1) in PADDING:
            start += 4
        return start


def _c_string(data, at: int) -> str:
    end = data.find(b"\0", at)
    return bytes(data[at:end]).decode("utf-8", "replace")


def _eh_frame_ranges(data, offset: int, address: int, file_offset) -> list[tuple[int, int]]:
    """(start, size) of every function in .eh_frame_hdr's binary-search table, the size read from its FDE.
    Only the encodings GCC and LLVM write (pc-relative sdata4 frame pointer, udata4 count, datarel sdata4
    pairs; sdata4 FDE fields) are read; [] for anything else."""
    version, frame_encoding, count_encoding, table_encoding = struct.unpack_from("<BBBB", data, offset)
    if (version, frame_encoding, count_encoding, table_encoding) != (1, 0x1B, 0x03, 0x3B):
        return []
    (count,) = struct.unpack_from("<I", data, offset + 8)
    pairs = struct.unpack_from(f"<{2 * count}i", data, offset + 12)
    ranges = []
    for index in range(0, 2 * count, 2):
        fde = file_offset(address + pairs[index + 1])
        (length,) = struct.unpack_from("<I", data, fde) if fde is not None else (0xFFFFFFFF,)
        (size,) = struct.unpack_from("<I", data, fde + 12) if length != 0xFFFFFFFF else (0,)
        ranges.append((address + pairs[index], size))
    return ranges


RET = 0xD65F03C0
PADDING = ((0xD503201F,), (0x00000000,))  # nop, udf #0, as words() returns them
#: (kind, mask, value) of the multiply-accumulate instructions counted per kernel (A64 encodings)
MAC_ENCODINGS = (
    ("dot", 0x9FE0FC00, 0x0E809400), ("dot", 0x9FC0F400, 0x0F80E000),  # SDOT/UDOT vector, by element
    ("mmla", 0xDFE0F400, 0x4E80A400),  # SMMLA/UMMLA/USMMLA
    ("fmla", 0xBFA0FC00, 0x0E20CC00), ("fmla", 0xBFE0FC00, 0x0E400C00), ("fmla", 0xBF80F400, 0x0F801000),
    ("fmla", 0xBFC0F400, 0x0F001000),  # FMLA vector single/double, half; by element single/double, half
    ("int_mla", 0xBF20FC00, 0x0E209400), ("int_mla", 0x9F20FC00, 0x0E208000),  # MLA, SMLAL/UMLAL vector
    ("int_mla", 0x9F00F400, 0x0F002000), ("int_mla", 0x9F3FFC00, 0x0E206800),  # SMLAL/UMLAL element, SADALP
    ("int_mull", 0x9F20FC00, 0x0E20C000), ("int_mull", 0x9F00F400, 0x0F00A000),  # SMULL/UMULL vector, element
)


def mac_kind(word: int) -> str | None:
    for kind, mask, value in MAC_ENCODINGS:
        if word & mask == value:
            return kind
    return None


@lru_cache(maxsize=8)
def elf_functions(path: str) -> ElfFunctions:
    return ElfFunctions(path)


@dataclass(frozen=True)
class Resolved:
    function: str
    library: str
    elf: ElfFunctions | None = None
    elf_address: int | None = None  # the block's address in the file's own ELF addresses


def resolve(address: int, counts: BlockCounts) -> Resolved:
    """The function and library of a guest address."""
    position = bisect_right([mapping.start for mapping in counts.maps], address) - 1
    mapping = counts.maps[position] if position >= 0 else None
    if mapping is None or address >= mapping.end:
        return Resolved(counts.qemu_names.get(address, f"0x{address:x}"), "(anonymous)")
    library = Path(mapping.path).name
    elf = elf_functions(mapping.path)
    elf_address = elf.elf_address(address - mapping.start + mapping.offset)
    found = elf.function(elf_address) if elf_address is not None else None
    if found is None:
        name = counts.qemu_names.get(address, f"{library}+0x{address - mapping.start + mapping.offset:x}")
        return Resolved(name, library)
    start, name = found
    return Resolved(name or counts.qemu_names.get(address) or f"{library}+0x{start:x}", library, elf, elf_address)


def kernel_instructions(counts: BlockCounts, runs: int) -> tuple[dict[tuple[str, str], float], dict]:
    """Instructions per inference of each (function, library): those of the median inference (of the first
    ``runs`` intervals, the one whose total is the median) less those of the median empty iteration (of the
    next ``runs``), so that they add up to the script's ``instructions_per_inference`` exactly when ``runs``
    is odd; and per (function, library) the multiply-accumulate instructions of that inference by kind."""
    inference = _median_interval(counts.intervals[:runs])
    harness = _median_interval(counts.intervals[runs:2 * runs])
    totals: dict[tuple[str, str], float] = {}
    macs: dict[tuple[str, str], dict[str, float]] = {}
    resolved: dict[int, Resolved] = {}
    for interval, sign in ((inference, 1), (harness, -1)):
        for (address, length), executed in interval.items():
            where = resolved.get(address) or resolved.setdefault(address, resolve(address, counts))
            key = (where.function, where.library)
            totals[key] = totals.get(key, 0) + sign * executed
            if sign > 0 and where.elf is not None:
                _count_macs(macs.setdefault(key, {}), where, length, executed // length)
    return totals, macs


def _median_interval(intervals: list[dict]) -> dict:
    if not intervals:
        return {}
    return sorted(intervals, key=lambda interval: sum(interval.values()))[(len(intervals) - 1) // 2]


def _count_macs(kinds: dict[str, float], where: Resolved, length: int, executions: float) -> None:
    for word in where.elf.words(where.elf_address, length):
        kind = mac_kind(word)
        if kind:
            kinds[kind] = kinds.get(kind, 0.0) + executions


def kernel_table(path: Path, runs: int, shown: int = SHOWN_KERNELS) -> dict | None:
    """The per-kernel summary of one profiling run: the ``shown`` functions with the most instructions per
    inference, the rest summed as "(other)", and their total; None when the file holds no intervals."""
    counts = read_block_counts(path)
    if runs < 1 or len(counts.intervals) < runs:
        return None
    totals, macs = kernel_instructions(counts, runs)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    rows = [{"symbol": name, "library": library, "instructions": round(value),
             "macs": {kind: round(count) for kind, count in sorted(macs.get((name, library), {}).items())}}
            for (name, library), value in ranked[:shown] if value > 0]
    for row, readable in zip(rows, demangle([row["symbol"] for row in rows])):
        row["symbol"] = readable
    rest = sum(totals.values()) - sum(row["instructions"] for row in rows)
    if rows and abs(rest) >= 0.5:
        rows.append({"symbol": OTHER, "library": "", "instructions": round(rest), "macs": {}})
    inference_totals = [sum(interval.values()) for interval in counts.intervals[:runs]]
    return {"total": round(sum(totals.values())), "kernels": rows, "runs": runs,
            "spread": _spread(inference_totals),
            "source": "qemu TCG plugin, per translated block: the median inference less the median empty iteration"}


def demangle(names: list[str]) -> list[str]:
    """C++ names made readable by binutils' c++filt where it is installed (unchanged otherwise)."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return names
    try:
        done = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return names
    readable = done.stdout.splitlines()
    return readable if done.returncode == 0 and len(readable) == len(names) else names


def _spread(values: list[int]) -> float:
    median = statistics.median(values) if values else 0
    return round((max(values) - min(values)) / median, 6) if median else 0.0
