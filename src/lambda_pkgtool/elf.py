"""Just enough ELF parsing (pure Python) to read the symbol versions a file needs."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .common import ELF_MAGIC, ToolError

SHT_DYNSYM = 11
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF
VERSYM_INDEX_MASK = 0x7FFF


@dataclass(frozen=True)
class Section:
    type: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True)
class VersionNeed:
    """One Vernaux entry: `library` must provide `version`; `index` is its versym number."""

    library: str
    version: str
    index: int


class ElfReader:
    """Just enough of an ELF reader for version needs: section headers, string tables."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        ident = self.read(0, 16)
        if ident[:4] != ELF_MAGIC:
            raise ToolError(f"{name}: not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ToolError(f"{name}: unknown ELF class {ident[4]} or data encoding {ident[5]}")
        self.is64 = ident[4] == 2
        self.endian = "<" if ident[5] == 1 else ">"
        self.sections = self.read_sections()

    def read(self, offset: int, size: int) -> bytes:
        self.handle.seek(offset)
        data = self.handle.read(size)
        if len(data) != size:
            raise ToolError(f"{self.name}: truncated ELF (wanted {size} bytes at {offset})")
        return data

    def unpack(self, fmt: str, data: bytes, offset: int = 0) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.endian + fmt, data, offset)
        except struct.error as exc:
            raise ToolError(f"{self.name}: malformed ELF structure at {offset}") from exc

    def read_sections(self) -> list[Section]:
        header_fmt = "HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH"
        header = self.unpack(header_fmt, self.read(16, struct.calcsize("<" + header_fmt)))
        shoff, shentsize, shnum = header[5], header[10], header[11]
        if shoff == 0:
            raise ToolError(f"{self.name}: ELF has no section headers; cannot read its "
                            "symbol versions (was it sstrip'ed?)")
        section_fmt = "IIQQQQIIQQ" if self.is64 else "IIIIIIIIII"
        if shentsize < struct.calcsize("<" + section_fmt):
            raise ToolError(f"{self.name}: section header size {shentsize} is too small")
        first = self.section_at(shoff, section_fmt)
        count = shnum or first.size  # extended numbering: the count is in section 0
        return [self.section_at(shoff + i * shentsize, section_fmt) for i in range(count)]

    def section_at(self, offset: int, fmt: str) -> Section:
        fields = self.unpack(fmt, self.read(offset, struct.calcsize("<" + fmt)))
        return Section(type=fields[1], offset=fields[4], size=fields[5], link=fields[6],
                       info=fields[7], entsize=fields[9])

    def section_data(self, section: Section) -> bytes:
        return self.read(section.offset, section.size)

    def linked(self, section: Section) -> Section:
        if section.link >= len(self.sections):
            raise ToolError(f"{self.name}: section link {section.link} out of range")
        return self.sections[section.link]

    def string(self, table: bytes, offset: int) -> str:
        end = table.find(b"\0", offset)
        if offset >= len(table) or end < 0:
            raise ToolError(f"{self.name}: string offset {offset} out of range")
        return table[offset:end].decode("utf-8", "replace")


def walk_verneed(elf: ElfReader, section: Section) -> Iterator[VersionNeed]:
    data = elf.section_data(section)
    strings = elf.section_data(elf.linked(section))
    offset, seen = 0, set()
    for _entry in range(section.info or len(data) // 16):
        if offset in seen or offset + 16 > len(data):
            raise ToolError(f"{elf.name}: malformed version-needs section")
        seen.add(offset)
        _version, count, file_name, aux, next_need = elf.unpack("HHIII", data, offset)
        library = elf.string(strings, file_name)
        aux_offset = offset + aux
        for _entry in range(count):
            _hash, _flags, index, name, next_aux = elf.unpack("IHHII", data, aux_offset)
            yield VersionNeed(library, elf.string(strings, name), index)
            if next_aux == 0:
                break
            aux_offset += next_aux
        if next_need == 0:
            break
        offset += next_need


def version_needs(elf: ElfReader) -> list[VersionNeed]:
    needs: list[VersionNeed] = []
    for section in elf.sections:
        if section.type == SHT_GNU_VERNEED:
            needs.extend(walk_verneed(elf, section))
    return needs


def symbols_by_version_index(elf: ElfReader) -> dict[int, list[str]]:
    """Dynamic symbol names grouped by their versym index (from SHT_GNU_versym)."""
    result: dict[int, list[str]] = {}
    for versym in (s for s in elf.sections if s.type == SHT_GNU_VERSYM):
        dynsym = elf.linked(versym)
        if dynsym.type != SHT_DYNSYM:
            continue
        entsize = dynsym.entsize or (24 if elf.is64 else 16)
        symbols = elf.section_data(dynsym)
        strings = elf.section_data(elf.linked(dynsym))
        indices = elf.section_data(versym)
        for i in range(min(len(indices) // 2, len(symbols) // entsize)):
            (index,) = elf.unpack("H", indices, 2 * i)
            (name,) = elf.unpack("I", symbols, i * entsize)
            if name:
                result.setdefault(index & VERSYM_INDEX_MASK, []).append(elf.string(strings, name))
    return result


@dataclass
class FileVersions:
    needs: list[VersionNeed]
    symbols: dict[str, list[str]]  # version name -> symbols bound to it


def read_file_versions(path: Path, name: str) -> FileVersions:
    with path.open("rb") as handle:
        elf = ElfReader(handle, name)
        needs = version_needs(elf)
        by_index = symbols_by_version_index(elf) if needs else {}
    symbols: dict[str, set[str]] = {}
    for need in needs:  # one version name can come from several libraries (libc, libm)
        symbols.setdefault(need.version, set()).update(by_index.get(need.index, []))
    return FileVersions(needs=needs, symbols={v: sorted(names) for v, names in symbols.items()})
