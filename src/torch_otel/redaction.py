"""Optional redaction before export: absolute file paths removed or hashed, and code-carrying artifact bodies
(generated code, graphs, bytecode) replaced by a size note. Off by default."""

from __future__ import annotations

import hashlib
import re

CODE_ARTIFACTS = frozenset({
    "output_code", "kernel_code", "graph_code", "graph_code_verbose", "graph", "aot_graphs", "aot_joint_graph",
    "aot_graphs_effects", "post_grad_graphs", "pre_grad_graphs", "bytecode", "ir_pre_fusion", "ir_post_fusion",
    "ddp_graphs", "compiled_autograd_verbose",
})
_CODE_TRACE_KINDS = re.compile(r"graph|code|bytecode|kernel", re.I)
# POSIX absolute paths with at least two components, and Windows drive paths.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+\-]+){2,}|\b[A-Za-z]:\\[^\s:'\"<>|]+")
PATH_MODES = ("off", "hash", "remove")


class Redactor:
    def __init__(self, paths: str = "off", code: bool = False) -> None:
        self.paths = paths
        self.code = code
        self.active = paths != "off" or code

    def path(self, path: str) -> str:
        if self.paths == "off" or not _ABSOLUTE_PATH.fullmatch(path):
            return path
        directory, _, name = path.replace("\\", "/").rpartition("/")
        if self.paths == "remove":
            return name
        return f"<{hashlib.sha256(directory.encode()).hexdigest()[:12]}>/{name}"

    def text(self, text: str) -> str:
        if self.paths == "off":
            return text
        return _ABSOLUTE_PATH.sub(lambda match: self.path(match.group(0)), text)

    def artifact_body(self, artifact: str | None, body: str) -> tuple[str, bool]:
        """The body to export for an artifact (or structured trace kind), and whether its code was removed."""
        if self.code and artifact and (artifact in CODE_ARTIFACTS or _CODE_TRACE_KINDS.search(artifact)):
            return f"<code redacted: {len(body.encode('utf-8', 'surrogatepass'))} bytes>", True
        return self.text(body), False
