"""Neutral file I/O at the bottom of the package: reading corpora and JSONL, atomic writes, hashing,
and the output-folder guard.

Every stage writes through this room, so one set of rules holds everywhere: a file appears whole
or not at all (temp name in the same folder, then rename), temp names carry the writing process so a
later run can sweep what a killed one left, and no command replaces a folder that is not its own.
"""

from taskmill.fileio.atomic import (
    atomic_dir,
    replace_dir,
    sha256_file,
    temp_path,
    write_atomic,
    write_bytes,
    write_json,
    write_jsonl,
    write_text,
)
from taskmill.fileio.outdir import MARKER, OutputFolder, claim_output
from taskmill.fileio.read import (
    CORPUS_FILE,
    JSON_OBJECT_EXPECTED,
    corpus_file,
    iter_jsonl,
    jsonl_object_problem,
    not_utf8,
    parse_yaml,
    read_jsonl,
    read_text,
    read_yaml,
    utf8_problem,
)

__all__ = [
    "CORPUS_FILE", "JSON_OBJECT_EXPECTED", "corpus_file", "iter_jsonl", "jsonl_object_problem", "not_utf8", "parse_yaml", "read_jsonl", "read_text", "read_yaml", "utf8_problem", "MARKER", "OutputFolder", "atomic_dir", "claim_output", "replace_dir", "sha256_file", "temp_path",
    "write_atomic", "write_bytes", "write_json", "write_jsonl", "write_text",
]
