"""Optional redaction before export: file paths removed or hashed, and user source code removed. Off by default.

Paths: the directories this process knows (the working directory, the home directory, ``sys.path`` entries, and the
directories of every user source file: compiled code's ``co_filename`` seen in ``code.file.path`` and every file
``linecache`` holds, which is where torch reads the source lines it quotes) are found in any text, in absolute,
cwd-relative, torch-shortened (``torch.utils._traceback.shorten_filename``), trailing-components and JSON-escaped
form, longest first, spaces and non-ASCII names included; a regular expression for other absolute paths is the
fallback. A directory becomes a short SHA-256 prefix of its absolute form (the same whatever form it was found in),
or ``<dir>``; a file keeps its name.

Code: the bodies of code-carrying artifacts are replaced whole; in every other body and attribute, each non-trivial
source line, comment and string literal of the user's source files (those ``linecache`` holds or ``code.file.path``
names, outside the Python installation, site-packages and torch) is replaced by ``<source redacted>``.

Everything is learned lazily, on the export thread (and on the compile thread for compile-span attributes), and
compiled into cached expressions rebuilt only when a new file or directory turns up. Per text: a few length checks,
one ``re.sub`` for paths if the text holds a separator, one ``findall`` and a set test for code (and the code
expressions only when the text holds one of their anchor words)."""

from __future__ import annotations

import hashlib
import io
import json
import linecache
import os
import re
import sys
import sysconfig
import threading
import time
import tokenize
from collections import Counter
from collections.abc import Iterable
from typing import Any

CODE_ARTIFACTS = frozenset(
    {
        "output_code",
        "kernel_code",
        "graph_code",
        "graph_code_verbose",
        "graph",
        "aot_graphs",
        "aot_joint_graph",
        "aot_graphs_effects",
        "post_grad_graphs",
        "pre_grad_graphs",
        "bytecode",
        "ir_pre_fusion",
        "ir_post_fusion",
        "ddp_graphs",
        "compiled_autograd_verbose",
    }
)
_CODE_TRACE_KINDS = re.compile(r"graph|code|bytecode|kernel", re.I)
# POSIX absolute paths with at least two components, and Windows drive paths.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+\-]+){2,}|\b[A-Za-z]:\\[^\s:'\"<>|]+")
PATH_MODES = ("off", "hash", "remove")
SOURCE_REDACTED = "<source redacted>"
DIRECTORY_REMOVED = "<dir>"
MIN_SOURCE_LINE = 6  # a stripped source line shorter than this (``pass``, ``else:``, ``x = 1``) is not searched for
MIN_LITERAL = 8  # nor is a string literal (or a line of one) or a comment shorter than this
_NAME = r"[\w.@+\-]"
_SEGMENT = r"/[\w.@+\-]+"
_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\")
_FILES_KEPT = 2000  # user source files whose lines are searched for; past this, files only add their directory
_SEEN_KEPT = 100_000  # file names looked at; past this, new ones are still learned, just not remembered as seen
_CACHE_KEPT = 8192  # replacements remembered per Redactor, per state of knowledge


def _trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching any of ``words``, the longest where several match, built as a character trie
    so that a search costs about as much for ten thousand words as for ten."""
    root: dict = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:
        out = []
        while len(node) == 1 and "" not in node:  # a chain without branches needs no group
            ((char, node),) = node.items()
            out.append(re.escape(char))
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if branches:
            group = branches[0] if len(branches) == 1 else "|".join(branches)
            out.append(f"(?:{group})?" if "" in node else f"(?:{group})" if len(branches) > 1 else group)
        return "".join(out)

    try:
        return build(root)
    except RecursionError:  # an absurdly deep trie: a plain alternation, longest first, matches the same
        return "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))


_STRING_PREFIX = re.compile(r"^[A-Za-z]*")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")


def _literal_pieces(token: str) -> list[str]:
    """The text of a string literal token as written (no evaluation, so no escape warnings): its lines, and for
    an f-string the constant parts between replacement fields."""
    prefix = _STRING_PREFIX.match(token).group()  # type: ignore[union-attr]  # the pattern matches any string
    inner = token[len(prefix) :]
    quote = inner[:3] if inner[:3] in ('"""', "'''") else inner[:1]
    inner = inner[len(quote) : len(inner) - len(quote)]
    parts = _FORMAT_FIELD.split(inner) if "f" in prefix.lower() else [inner]
    return [line.strip() for part in parts for line in part.splitlines()]


def _source_patterns(filename: str) -> frozenset[str]:
    """What of a user source file counts as code: its non-trivial stripped lines, comments and string literals."""
    lines = linecache.getlines(filename)
    patterns = {
        line
        for line in (raw.strip() for raw in lines)
        if len(line) >= MIN_SOURCE_LINE and any(char.isalnum() for char in line)
    }
    try:
        for token in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if token.type == tokenize.COMMENT:
                pieces = [token.string.strip()]
            elif token.type == tokenize.STRING:
                pieces = _literal_pieces(token.string)
            else:
                continue
            patterns.update(
                piece for piece in pieces if len(piece) >= MIN_LITERAL and any(char.isalnum() for char in piece)
            )
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass  # what was tokenized before the error counts; the lines count anyway
    return frozenset(patterns)


_WORD = re.compile(r"\w+")


class _CodeSearch:
    """Source patterns as a few trie expressions, with a cheap first test. Each pattern's anchor is one of its words
    (the rarest among the patterns, longest among equals); a quote is matched only as whole words (``(?<!\\w)`` and
    ``(?!\\w)`` around it), so a text that quotes a pattern holds its anchor as a word, and a text holding no anchor
    costs one ``findall`` and a set test. Patterns come in batches (the files learned together); batches are merged
    like a binary counter, so learning file after file recompiles each pattern O(log files) times and a text is
    searched by O(log files) expressions, whose matches are merged (a literal inside a quoted line never splits it)."""

    def __init__(self) -> None:
        self._anchors: set[str] = set()
        self._counts: Counter[str] = Counter()
        self._batches: list[tuple[frozenset[str], Any]] = []

    def add(self, patterns: Iterable[str]) -> None:
        words_of = {pattern: set(_WORD.findall(pattern)) for pattern in patterns}
        for words in words_of.values():
            self._counts.update(words)
        batch = frozenset(pattern for pattern, words in words_of.items() if words)
        if not batch:
            return
        self._anchors.update(
            min(words_of[pattern], key=lambda word: (self._counts[word], -len(word), word)) for pattern in batch
        )
        batches = list(self._batches)
        while batches and len(batches[-1][0]) <= 2 * len(batch):
            batch = batch | batches.pop()[0]
        regex = re.compile(rf"(?<!\w)(?:{_trie_pattern(batch)})(?!\w)")
        self._batches = [*batches, (batch, regex)]

    def sub(self, text: str) -> str:
        batches = self._batches
        if not batches or self._anchors.isdisjoint(_WORD.findall(text)):
            return text
        if len(batches) == 1:
            return batches[0][1].sub(SOURCE_REDACTED, text)
        spans = sorted(match.span() for _, regex in batches for match in regex.finditer(text))
        if not spans:
            return text
        out, position, end = [], 0, -1
        for start, stop in spans:
            if start > end:
                if end >= 0:
                    out.append(SOURCE_REDACTED)
                out.append(text[position:start])
                end = stop
            else:
                end = max(end, stop)
            position = end
        out.append(SOURCE_REDACTED)
        out.append(text[position:])
        return "".join(out)


def _excluded_prefixes() -> tuple[str, ...]:
    """Directories whose files are not the user's: the Python installation, site-packages, torch."""
    roots: set[str | None] = set()
    for scheme_paths in (
        sysconfig.get_paths(),
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix}),
    ):
        roots.update(scheme_paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    torch_file = getattr(sys.modules.get("torch"), "__file__", None)
    if torch_file:
        roots.add(os.path.dirname(torch_file))
    prefixes = set()
    for root in filter(None, roots):
        for form in (os.path.normpath(root), os.path.realpath(root)):
            prefixes.add(form.rstrip(os.sep) + os.sep)
    return tuple(sorted(prefixes))


def _relative_forms(directory: str, cwd: str, torch_base: str | None) -> set[str]:
    """The forms other than absolute that a directory's files are printed with: relative to the working directory
    (``os.path.relpath``), the form torch's ``shorten_filename`` leaves (the path less its common prefix with
    torch's parent directory and one more character, so ``/tmp/a/x.py`` becomes ``mp/a/x.py``), and every tail of
    whole components, for whatever else cuts a path short. Only ever matched when followed by ``/name``."""
    forms = set()
    try:
        forms.add(os.path.relpath(directory, cwd))
    except ValueError:
        pass
    if torch_base:
        try:
            common = os.path.commonpath([directory, torch_base])
        except ValueError:
            common = None
        if common is not None and common != os.path.normpath(torch_base):
            forms.add(directory[len(common) + 1 :])
    components = directory.split(os.sep)
    forms.update(os.sep.join(components[index:]) for index in range(1, len(components)))
    return {
        form
        for form in forms
        if form and form != os.curdir and not os.path.isabs(form) and set(form.split(os.sep)) - {os.pardir, ""}
    }


class _Knowledge:
    """What this process knows about its paths and its user source, shared by every Redactor: the compile thread
    learns ``code.file.path`` values, the export thread learns what ``linecache`` holds (the files torch quotes)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seen: set[str] = set()
        self.user_files: list[str] = []
        self.user_dirs: set[str] = set()
        self.version = 0  # bumped when anything a path regex depends on changes
        self.cwd = os.getcwd()
        self.home = os.path.expanduser("~")
        self._linecache_size = -1
        self._cwd_checked = 0.0
        self._sys_path: list[str] = []
        self._excluded: tuple[str, ...] | None = None
        self._excluded_with_torch = False
        self._paths: tuple | None = None
        self._file_patterns: dict[str, frozenset[str]] = {}

    def refresh(self) -> None:
        """A few length checks per call; the rest only when linecache, sys.path or the working directory changed."""
        if len(linecache.cache) != self._linecache_size:
            self._linecache_size = len(linecache.cache)
            seen = self.seen
            for name in list(linecache.cache):
                if name not in seen:
                    self.learn(name)
        if sys.path != self._sys_path:
            with self.lock:
                self._sys_path = list(sys.path)
                self.version += 1
        if not self._excluded_with_torch and "torch" in sys.modules:
            with self.lock:
                self.excluded()
        now = time.monotonic()
        if now - self._cwd_checked > 1.0:  # a chdir is rare; a syscall per text is not free
            self._cwd_checked = now
            try:
                cwd = os.getcwd()
            except OSError:
                cwd = self.cwd
            if cwd != self.cwd:
                with self.lock:
                    self.cwd = cwd
                    self.version += 1

    def excluded(self) -> tuple[str, ...]:
        if self._excluded is None or (not self._excluded_with_torch and "torch" in sys.modules):
            self._excluded_with_torch = "torch" in sys.modules
            self._excluded = _excluded_prefixes()
            self.version += 1  # torch's location also decides the short forms torch prints paths in
        return self._excluded

    def learn(self, filename: str) -> None:
        """Counts ``filename`` (a code object's ``co_filename``) in: its directory, and its source if it is the user's."""
        if filename in self.seen or not isinstance(filename, str):
            return
        with self.lock:
            if filename in self.seen:
                return
            if len(self.seen) < _SEEN_KEPT:
                self.seen.add(filename)
            if not filename or filename.startswith("<"):
                if filename.startswith("<ipython-input-") and len(self.user_files) < _FILES_KEPT:
                    self.user_files.append(filename)
                return
            if _WINDOWS_PATH.match(filename):
                return  # the fallback expression covers drive paths; their source is not ours to read here
            absolute = os.path.normpath(os.path.join(self.cwd, filename))
            if absolute.startswith(self.excluded()):
                return
            for directory in {os.path.dirname(absolute), os.path.dirname(os.path.realpath(absolute))}:
                if directory not in self.user_dirs and directory.strip(os.sep):
                    self.user_dirs.add(directory)
                    self.version += 1
            if len(self.user_files) < _FILES_KEPT:
                self.user_files.append(filename)
                self.version += 1

    def path_state(self) -> tuple:
        """(version, regex, absolute form of each absolute text form, absolute form of each relative text form)."""
        state = self._paths
        if state is not None and state[0] == self.version:
            return state
        with self.lock:
            version, cwd = self.version, self.cwd
            torch = sys.modules.get("torch")
            torch_file = getattr(torch, "__file__", None)
            torch_base = os.path.dirname(os.path.dirname(torch_file)) if isinstance(torch_file, str) else None
            directories = {cwd, self.home, *self.user_dirs}
            directories.update(os.path.join(cwd, entry) for entry in self._sys_path if isinstance(entry, str))
            absolute: dict[str, str] = {}
            relative: dict[str, str] = {}
            for directory in directories:
                for form in {os.path.normpath(directory), os.path.realpath(directory)}:
                    if not form.strip(os.sep) or _WINDOWS_PATH.match(form):
                        continue
                    for text in {form, json.dumps(form)[1:-1]}:
                        absolute.setdefault(text, form)
                    for rel in _relative_forms(form, cwd, torch_base):
                        for text in {rel, json.dumps(rel)[1:-1]}:
                            relative.setdefault(text, form)
            parts = [rf"(?P<dir>{_trie_pattern(absolute)})(?!{_NAME})(?P<rest>(?:{_SEGMENT})*)"]
            if relative:
                parts.append(rf"(?P<rel>{_trie_pattern(relative)})(?P<rrest>(?:{_SEGMENT})+)")
            pattern = rf"(?<![\w.])(?:(?<![\-/@+])(?:{'|'.join(parts)})|(?P<other>{_ABSOLUTE_PATH.pattern}))"
            state = self._paths = (version, re.compile(pattern), absolute, relative)
            return state

    def file_patterns(self, filename: str) -> frozenset[str]:
        with self.lock:
            found = self._file_patterns.get(filename)
            if found is None:
                found = self._file_patterns[filename] = _source_patterns(filename)
            return found


_KNOWN = _Knowledge()


class Redactor:
    def __init__(self, paths: str = "off", code: bool = False) -> None:
        self.paths = paths
        self.code = code
        self.active = paths != "off" or code
        self._cache: dict[str, str] = {}
        self._cache_version = -1
        self._search = _CodeSearch()
        self._files_added = 0
        self._with_paths: set[str] = set()
        self._variants = _CodeSearch()
        self._variants_key: tuple[int, int] = (-1, -1)

    # -- paths -----------------------------------------------------------------------------------------
    def _directory(self, directory: str) -> str:
        if self.paths == "remove":
            return DIRECTORY_REMOVED
        return f"<{hashlib.sha256(directory.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}>"

    def _file(self, directory: str, name: str) -> str:
        return name if self.paths == "remove" else f"{self._directory(directory)}/{name}"

    def path(self, path: str) -> str:
        """A file path such as ``code.file.path``: its directory hashed or removed, its file name kept. The file is
        learned, so its directory is redacted wherever else it appears, and its source under ``code``."""
        if not self.active or not isinstance(path, str):
            return path
        _KNOWN.refresh()
        _KNOWN.learn(path)
        if self.paths == "off" or ("/" not in path and "\\" not in path):
            return path
        if _WINDOWS_PATH.match(path):
            directory, _, name = path.replace("\\", "/").rpartition("/")
        else:
            directory, name = os.path.split(os.path.normpath(os.path.join(_KNOWN.cwd, path)))
        return self._file(directory, name)

    def _replacement(self, match: re.Match, state: tuple) -> str:
        found = match.group(0)
        cached = self._cache.get(found)
        if cached is not None:
            return cached
        if match["other"] is not None:
            if _WINDOWS_PATH.match(found):
                directory, _, name = found.replace("\\", "/").rpartition("/")
                replacement = self._file(directory, name)
            elif os.path.isdir(found):
                replacement = self._directory(os.path.normpath(found))
            else:
                directory, name = os.path.split(os.path.normpath(found))
                replacement = self._file(directory, name)
        else:
            if match["dir"] is not None:
                absolute = state[2][match["dir"]] + match["rest"]
            else:
                absolute = state[3][match["rel"]] + match["rrest"]
            if (match["dir"] is not None and not match["rest"]) or os.path.isdir(absolute):
                replacement = self._directory(os.path.normpath(absolute))
            else:
                directory, name = os.path.split(os.path.normpath(absolute))
                replacement = self._file(directory, name)
        if len(self._cache) < _CACHE_KEPT:
            self._cache[found] = replacement
        return replacement

    def _redact_paths(self, text: str) -> str:
        state = _KNOWN.path_state()
        if self._cache_version != state[0]:
            self._cache, self._cache_version = {}, state[0]
        return state[1].sub(lambda match: self._replacement(match, state), text)

    # -- code ------------------------------------------------------------------------------------------
    def _code_searches(self) -> tuple[_CodeSearch, ...]:
        """The search over every learned file's patterns, grown file by file, and (under ``paths``) a small one over
        the path-redacted forms of the patterns that hold a path, redone when what paths redact to changes."""
        files = _KNOWN.user_files
        if len(files) > self._files_added:
            count = len(files)
            patterns = set().union(*(_KNOWN.file_patterns(filename) for filename in files[self._files_added : count]))
            self._search.add(patterns)
            self._with_paths.update(pattern for pattern in patterns if "/" in pattern or "\\" in pattern)
            self._files_added = count
        if self.paths == "off" or not self._with_paths:
            return (self._search,)
        key = (self._files_added, _KNOWN.version)
        if key != self._variants_key:
            variants = _CodeSearch()
            variants.add({self._redact_paths(pattern) for pattern in self._with_paths})
            self._variants, self._variants_key = variants, key
        return (self._search, self._variants)

    def text(self, text: str) -> str:
        """Any text (a body, a reason, a stack trace): known directories and absolute paths redacted (``paths``),
        then every quoted user source line, comment and string literal (``code``)."""
        if not self.active or not text:
            return text
        _KNOWN.refresh()
        if self.paths != "off" and ("/" in text or "\\" in text):  # every form of a path holds a separator
            text = self._redact_paths(text)
        if self.code:
            for search in self._code_searches():
                text = search.sub(text)
        return text

    def artifact_body(self, artifact: str | None, body: str) -> tuple[str, bool]:
        """The body to export for an artifact (or structured trace kind), and whether its code was removed."""
        if self.code and artifact and (artifact in CODE_ARTIFACTS or _CODE_TRACE_KINDS.search(artifact)):
            return f"<code redacted: {len(body.encode('utf-8', 'surrogatepass'))} bytes>", True
        return self.text(body), False
