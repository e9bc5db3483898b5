"""The Helm chart in helm/kfadapter, checked without a helm binary.

A small renderer for the subset of Go templates + Sprig the chart uses (`.Values` lookups, variables,
`if/else if/else/with/range/define/end`, `include`, `toYaml | nindent`, `quote`, `default`, `printf`, …) renders
every template with the chart's defaults and with the optional features switched on; the output must be YAML
that says what the chart promises (hardened pod, probes, O-RAN ConfigMap, Service `kfadapter`:5001, …).
Unknown functions, unknown syntax and `.Values` paths missing from values.yaml are errors, so the renderer
cannot silently accept what helm would reject. When `helm` is on PATH, `helm lint` and `helm template` run too.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "kfadapter"
TEMPLATES = CHART / "templates"
SETTINGS_SOURCES = [ROOT / "kfadapter" / f for f in ("settings/model.py", "settings/checks.py", "server/gunicorn_conf.py")]
ENV_NAME = re.compile(r"""["']((?:KFADAPTER|KF|KUBEFLOW|TRAININGMGR)_[A-Z0-9_]+)["']""")
TOKEN_FILE = "/var/run/secrets/kubeflow/pipelines/token"


# --------------------------------------------------------------------------------------------------------------
# A Go-template subset renderer
# --------------------------------------------------------------------------------------------------------------

class TemplateError(Exception):
    """The template uses something this renderer (or helm) would not accept."""


class StrictValues(dict):
    """A `.Values` mapping: a missing key is an error, not an empty value."""


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return StrictValues({k: _strict(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _truth(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings/lists/maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def _fmt(value: Any) -> str:
    """Print a value as helm does (`%v`; numbers from values.yaml are float64 in helm)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if float(value).is_integer() and abs(value) < 1e6:
            return str(int(value))
        if isinstance(value, float) and abs(value) < 1e6 and abs(value) >= 1e-4:
            return repr(value)
        raise TemplateError(f"helm prints {value!r} in exponent form: quote it in values.yaml")
    if isinstance(value, (dict, list)):
        raise TemplateError(f"printing a map or list ({value!r}) as text: use toYaml")
    return str(value)


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(_plain(value), default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(width: int, text: str) -> str:
    pad = " " * int(width)
    return pad + text.replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    out, i, it = [], 0, iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
            elif verb in "svd":
                out.append(_fmt(next(it)))
            elif verb == "q":
                out.append(json.dumps(_fmt(next(it))))
            else:
                raise TemplateError(f"printf verb %{verb} not supported")
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _default(default: Any, *given: Any) -> Any:
    return given[0] if given and _truth(given[0]) else default


def _and(*args: Any) -> Any:
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if _truth(a):
            return a
    return args[-1]


def _required(message: str, value: Any) -> Any:
    if not _truth(value):
        raise TemplateError(f"required: {message}")
    return value


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "quote": lambda *a: " ".join(json.dumps(_fmt(x)) for x in a if x is not None),
    "squote": lambda *a: " ".join(f"'{_fmt(x)}'" for x in a if x is not None),
    "default": _default,
    "printf": _printf,
    "print": lambda *a: "".join(_fmt(x) for x in a),
    "toString": _fmt,
    "trunc": lambda n, s: s[: int(n)] if int(n) >= 0 else s[int(n):],
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "replace": lambda old, new, s: s.replace(old, new),
    "contains": lambda sub, s: sub in s,
    "lower": lambda s: s.lower(),
    "sha256sum": lambda s: hashlib.sha256(s.encode()).hexdigest(),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "int": lambda a: int(a or 0),
    "not": lambda a: not _truth(a),
    "and": _and,
    "or": _or,
    "empty": lambda a: not _truth(a),
    "required": _required,
}

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<decl>:=)
  | (?P<assign>=)
  | (?P<punct>[()|,])
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)


def _lex(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise TemplateError(f"cannot parse {expr[pos:]!r} in {{{{ {expr} }}}}")
        pos = m.end()
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
    return tokens


class _Parser:
    """Turn a pipeline's tokens into nested lists: a pipeline is [commands], a command is [args]."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.i = tokens, 0

    def pipeline(self) -> list:
        commands = [self.command()]
        while self.i < len(self.tokens) and self.tokens[self.i] == ("punct", "|"):
            self.i += 1
            commands.append(self.command())
        return commands

    def command(self) -> list:
        args = []
        while self.i < len(self.tokens) and self.tokens[self.i] not in (("punct", "|"), ("punct", ")")):
            kind, text = self.tokens[self.i]
            self.i += 1
            if (kind, text) == ("punct", "("):
                args.append(("pipe", self.pipeline()))
                if self.i >= len(self.tokens) or self.tokens[self.i] != ("punct", ")"):
                    raise TemplateError("unbalanced parentheses")
                self.i += 1
            elif kind == "punct":
                raise TemplateError(f"unexpected {text!r}")
            else:
                args.append((kind, text))
        if not args:
            raise TemplateError("empty command in pipeline")
        return args


def _parse_pipeline(expr: str) -> list:
    parser = _Parser(_lex(expr))
    pipeline = parser.pipeline()
    if parser.i != len(parser.tokens):
        raise TemplateError(f"trailing tokens in {expr!r}")
    return pipeline


def _split_decl(expr: str) -> tuple[list[str], str, list]:
    """`$a, $b := pipeline` -> (["$a", "$b"], ":=", pipeline); no declaration -> ([], "", pipeline)."""
    m = re.match(r"^\s*(\$[A-Za-z0-9_]*(?:\s*,\s*\$[A-Za-z0-9_]*)?)\s*(:=|=)(?!=)(.*)$", expr, re.S)
    if not m:
        return [], "", _parse_pipeline(expr)
    names = [n.strip() for n in m.group(1).split(",")]
    return names, m.group(2), _parse_pipeline(m.group(3))


def _tokenize(source: str) -> list[tuple[str, str]]:
    """Text and actions, with `{{-` / `-}}` whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            out.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            out.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = source[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if text:
        out.append(("text", text))
    return out


def _parse_nodes(tokens: list[tuple[str, str]], i: int, defines: dict, stops: tuple[str, ...]) -> tuple[list, int, str]:
    """Parse until one of `stops` (an `end` or `else…` action); return (nodes, next index, stop action)."""
    nodes: list = []
    while i < len(tokens):
        kind, body = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word in ("end", "else"):
            if word not in stops:
                raise TemplateError(f"unexpected {{{{ {body} }}}}")
            return nodes, i, body
        if word == "if":
            branches, else_nodes = [], []
            cond = rest
            while True:
                inner, i, stop = _parse_nodes(tokens, i, defines, ("end", "else"))
                branches.append((_parse_pipeline(cond), inner))
                if stop == "end":
                    break
                if stop.startswith("else if "):
                    cond = stop[len("else if "):]
                    continue
                if stop != "else":
                    raise TemplateError(f"unsupported {{{{ {stop} }}}}")
                else_nodes, i, stop = _parse_nodes(tokens, i, defines, ("end",))
                break
            nodes.append(("if", branches, else_nodes))
        elif word in ("with", "range"):
            names, _, pipeline = _split_decl(rest) if word == "range" else ([], "", _parse_pipeline(rest))
            inner, i, stop = _parse_nodes(tokens, i, defines, ("end", "else"))
            else_nodes: list = []
            if stop == "else":
                else_nodes, i, stop = _parse_nodes(tokens, i, defines, ("end",))
            elif stop != "end":
                raise TemplateError(f"unsupported {{{{ {stop} }}}}")
            nodes.append((word, names, pipeline, inner, else_nodes))
        elif word == "define":
            name = json.loads(rest)
            inner, i, _ = _parse_nodes(tokens, i, defines, ("end",))
            defines[name] = inner
        elif word in ("template", "block", "break", "continue", "tpl"):
            raise TemplateError(f"{word} is not supported by this renderer: keep the chart simple")
        else:
            names, op, pipeline = _split_decl(body)
            nodes.append(("set", names, op, pipeline) if names else ("out", pipeline))
    if stops:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stops})")
    return nodes, i, ""


class Renderer:
    """Render the chart's templates the way `helm template` would, for the subset the chart uses."""

    def __init__(self, chart: Path, values: dict, release: str = "kfadapter", namespace: str = "traininghost") -> None:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        self.chart_name = meta["name"]
        self.defines: dict[str, list] = {}
        self.files: dict[str, list] = {}
        for path in sorted((chart / "templates").rglob("*")):
            if path.is_file():
                name = f"{self.chart_name}/{path.relative_to(chart).as_posix()}"
                nodes, _, _ = _parse_nodes(_tokenize(path.read_text()), 0, self.defines, ())
                self.files[name] = nodes
        self.root = {
            "Values": _strict(values),
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True,
                        "IsUpgrade": False, "Revision": 1},
            "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
            "Template": {"BasePath": f"{self.chart_name}/templates", "Name": ""},
            "Capabilities": {"KubeVersion": {"Version": "v1.30.0"}},
        }

    def render(self, relpath: str) -> str:
        """Render templates/<relpath> (the output helm would write for that file)."""
        name = f"{self.chart_name}/templates/{relpath}"
        return self._render_nodes(self.files[name], self.root, {"$": self.root})

    def render_all(self) -> dict[str, str]:
        """Every manifest template (not partials, not NOTES.txt) -> its output."""
        out = {}
        for name in self.files:
            rel = name.split("/templates/", 1)[1]
            if rel.endswith((".yaml", ".yml")) and not Path(rel).name.startswith("_"):
                out[rel] = self.render(rel)
        return out

    # evaluation ---------------------------------------------------------------------------------------------

    def _render_nodes(self, nodes: list, dot: Any, scope: dict) -> str:
        out: list[str] = []
        scope = dict(scope)  # variables declared inside a block end with it
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                out.append(_fmt(self._pipeline(node[1], dot, scope)))
            elif kind == "set":
                _, names, op, pipeline = node
                if op == "=" and names[0] not in scope:
                    raise TemplateError(f"assignment to undeclared {names[0]}")
                scope[names[0]] = self._pipeline(pipeline, dot, scope)
            elif kind == "if":
                for cond, body in node[1]:
                    if _truth(self._pipeline(cond, dot, scope)):
                        out.append(self._render_nodes(body, dot, scope))
                        break
                else:
                    out.append(self._render_nodes(node[2], dot, scope))
            elif kind == "with":
                value = self._pipeline(node[2], dot, scope)
                out.append(self._render_nodes(node[3] if _truth(value) else node[4],
                                              value if _truth(value) else dot, scope))
            elif kind == "range":
                _, names, pipeline, body, else_body = node
                value = self._pipeline(pipeline, dot, scope)
                if isinstance(value, dict):
                    items = [(k, value[k]) for k in sorted(value)]
                elif isinstance(value, list):
                    items = list(enumerate(value))
                elif value is None:
                    items = []
                else:
                    raise TemplateError(f"range over {value!r}")
                if not items:
                    out.append(self._render_nodes(else_body, dot, scope))
                for key, item in items:
                    inner = dict(scope)
                    if len(names) == 1:
                        inner[names[0]] = item
                    elif len(names) == 2:
                        inner[names[0]], inner[names[1]] = key, item
                    out.append(self._render_nodes(body, item, inner))
        return "".join(out)

    def _pipeline(self, pipeline: list, dot: Any, scope: dict) -> Any:
        value: Any = _NOTHING
        for command in pipeline:
            value = self._command(command, dot, scope, value)
        return value

    def _command(self, args: list, dot: Any, scope: dict, piped: Any) -> Any:
        kind, text = args[0]
        if kind == "ident" and text not in ("true", "false", "nil"):
            values = [self._arg(a, dot, scope) for a in args[1:]]
            if piped is not _NOTHING:
                values.append(piped)
            if text == "include":
                name, data = values
                return self._include(name, data)
            if text not in _FUNCTIONS:
                raise TemplateError(f"function {text!r} is not supported by this renderer")
            return _FUNCTIONS[text](*values)
        if len(args) != 1 or piped is not _NOTHING:
            raise TemplateError(f"{text!r} is not a function")
        return self._arg(args[0], dot, scope)

    def _include(self, name: str, data: Any) -> str:
        nodes = self.defines.get(name, self.files.get(name))
        if nodes is None:
            raise TemplateError(f"include of unknown template {name!r}")
        return self._render_nodes(nodes, data, {"$": self.root})

    def _arg(self, arg: tuple, dot: Any, scope: dict) -> Any:
        kind, text = arg
        if kind == "pipe":
            return self._pipeline(text, dot, scope)
        if kind == "str":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        if kind == "field":
            return self._lookup(dot, [p for p in text.split(".") if p], text)
        if kind == "var":
            head, *path = text.split(".")
            if head not in scope:
                raise TemplateError(f"undefined variable {head}")
            return self._lookup(scope[head], path, text)
        raise TemplateError(f"unexpected {text!r}")

    @staticmethod
    def _lookup(value: Any, path: list[str], text: str) -> Any:
        for i, key in enumerate(path):
            if not isinstance(value, dict):
                raise TemplateError(f"{text}: nil pointer evaluating {'.'.join(path[:i]) or '.'}.{key}")
            if isinstance(value, StrictValues) and key not in value:
                raise TemplateError(f"{text}: {key!r} is not in values.yaml")
            value = value.get(key)
        return value


_NOTHING = object()


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------

def default_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def merge(base: dict, override: dict) -> dict:
    """Helm's values merge: maps merge key by key, null deletes a key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(overrides: dict | None = None, **kwargs: Any) -> dict[tuple[str, str], dict]:
    """Render the chart and parse it: {(kind, name): manifest}. The values must satisfy the schema first."""
    values = merge(default_values(), overrides or {})
    jsonschema.validate(values, schema())
    manifests: dict[tuple[str, str], dict] = {}
    for rel, text in Renderer(CHART, values, **kwargs).render_all().items():
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in manifests, f"{rel}: duplicate {key}"
            assert doc["apiVersion"], rel
            manifests[key] = doc
    return manifests


def by_kind(manifests: dict, kind: str) -> list[dict]:
    return [m for (k, _), m in manifests.items() if k == kind]


def one(manifests: dict, kind: str) -> dict:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def container(manifests: dict) -> dict:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env") or []}


def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def settings_env_names() -> set[str]:
    """Every env variable name the adapter's settings (and gunicorn config) read, from their source."""
    names: set[str] = set()
    for path in SETTINGS_SOURCES:
        if path.exists():
            names |= set(ENV_NAME.findall(path.read_text()))
    return names


# --------------------------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------------------------

def test_chart_metadata_matches_the_package():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == "kfadapter" and meta["type"] == "application"
    project = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    # image.tag defaults to appVersion: the image built from this tree carries the package version.
    assert str(meta["appVersion"]) == project


def test_every_values_path_in_templates_exists():
    values = default_values()
    missing = []
    for path in sorted(TEMPLATES.rglob("*")):
        if not path.is_file():
            continue
        for m in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text()):
            node: Any = values
            for key in m.group(1).strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{path.relative_to(CHART)}: .Values{m.group(1)}")
                    break
                node = node[key]
    assert not missing, missing


def test_values_validate_against_the_schema():
    jsonschema.Draft7Validator.check_schema(schema())
    jsonschema.validate(default_values(), schema())


@pytest.mark.parametrize("override", [
    {"replicaCount": 2},                                          # one SQLite store, one pod
    {"persistence": {"accessModes": ["ReadWriteMany"]}},          # SQLite's WAL on network storage
    {"replicaCount": 3, "persistence": {"accessModes": ["ReadWriteMany"]}},
    {"store": {"url": "mysql://db/kf"}},                          # PostgreSQL or nothing
    {"config": {"KFADAPTER_KFP_TOKEN": "secret"}},                # a secret never goes into a ConfigMap
    {"config": {"KFADAPTER_API_TOKEN": "0123456789abcdef"}},
    {"config": {"KFADAPTER_OBJECT_STORE_SECRET_KEY": "minio123"}},
    {"config": {"KFADAPTER_STORE_PATH": "/elsewhere"}},           # the chart owns the store path
    {"config": {"lowercase": "x"}},
    {"securityContext": {"readOnlyRootFilesystem": False}},
    {"podSecurityContext": {"runAsNonRoot": False}},
    {"service": {"port": "5001"}},
    {"kubeflow": {"endpoint": "ml-pipeline:8888"}},
    {"objectStore": {"endpoint": "seaweedfs.kubeflow:9000"}},   # a URL, with its scheme
    {"objectStore": {"accessKeyKey": ""}},
    {"objectStore": {"bucket": "mlpipeline"}},                  # the bucket comes from each artifact's URI
    {"config": {"KFADAPTER_OBJECT_STORE_ENDPOINT": "http://x"}},  # the chart owns it: objectStore.endpoint
    {"persistence": {"size": "lots"}},
    {"unknownKey": 1},
])
def test_schema_refuses_bad_values(override):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merge(default_values(), override), schema())


def test_every_setting_is_set_by_the_chart_or_documented():
    """Each env name the adapter reads is set by the chart or listed in the chart README (kept up as it grows)."""
    manifests = render()
    c = container(manifests)
    configmap = one(manifests, "ConfigMap")
    set_by_chart = set(configmap["data"]) | set(env_of(c))
    for variant in ({"kubeflow": {"token": {"value": "t"}, "serviceAccountToken": {"enabled": True},
                                  "endpoint": "http://ml-pipeline.kubeflow:8888"}},
                    {"config": {"KFADAPTER_GUNICORN_WORKERS": "2"}}):
        rendered = render(variant)
        set_by_chart |= set(one(rendered, "ConfigMap")["data"]) | set(env_of(container(rendered)))
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    read = settings_env_names()
    assert {"KFADAPTER_STORE_PATH", "KUBEFLOW_HOST", "KF_ADAPTER_PORT"} <= read  # the extraction works
    undocumented = sorted(read - set_by_chart - documented)
    assert not undocumented, f"set these in the chart or list them in helm/kfadapter/README.md: {undocumented}"
    # And the other way round: the chart sets no name the adapter does not read (typos, renamed settings).
    ours = {n for n in set_by_chart if ENV_NAME.fullmatch(f'"{n}"')}
    assert ours <= read, f"the chart sets variables the adapter does not read: {sorted(ours - read)}"


def test_readme_documents_every_value():
    """The chart README's values table names every leaf of values.yaml."""
    readme = (CHART / "README.md").read_text()

    def leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in leaves(v, (*path, k))]
        return [path]

    # A map of free-form entries (config, podSecurityContext, a label selector, …) is documented by its own key.
    missing = [".".join(p) for p in leaves(default_values())
               if not any(f"`{'.'.join(p[:n])}`" in readme for n in range(len(p), 0, -1))]
    assert not missing, missing


# --------------------------------------------------------------------------------------------------------------
# Rendered output
# --------------------------------------------------------------------------------------------------------------

def test_default_render_objects():
    manifests = render()
    assert sorted(manifests) == [
        ("ConfigMap", "kfadapter"),
        ("Deployment", "kfadapter"),
        ("PersistentVolumeClaim", "kfadapter"),
        ("Pod", "kfadapter-test-connection"),
        ("Service", "kfadapter"),
        ("ServiceAccount", "kfadapter"),
    ]
    for m in manifests.values():
        assert m["metadata"]["namespace"] == "traininghost"
        assert m["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_service_is_what_tm_calls():
    manifests = render()
    service = one(manifests, "Service")
    assert service["metadata"]["name"] == "kfadapter"  # kfadapter.traininghost:5001
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 5001, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert container(manifests)["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]


def test_service_name_follows_the_release_when_unset():
    manifests = render({"service": {"name": ""}}, release="ran")
    assert one(manifests, "Service")["metadata"]["name"] == "ran-kfadapter"
    assert one(manifests, "Deployment")["metadata"]["name"] == "ran-kfadapter"


def test_configmap_carries_the_oran_variables():
    manifests = render()
    data = one(manifests, "ConfigMap")["data"]
    assert data == {
        "KUBEFLOW_HOST": "ml-pipeline-ui.kubeflow",
        "KUBEFLOW_PORT": "80",
        "KF_NAMESPACE": "ric",
        "KF_ADAPTER_PORT": "5001",
        "TRAININGMGR_HOST": "tm.traininghost",
        "TRAININGMGR_PORT": "32002",
        "KFADAPTER_STORE_PATH": "/data/kfadapter.sqlite",
        "KFADAPTER_OBJECT_STORE_ENDPOINT": "http://seaweedfs.kubeflow:9000",  # KFP >= 2.15's SeaweedFS
    }
    assert all(isinstance(v, str) for v in data.values())
    c = container(manifests)
    assert c["envFrom"] == [{"configMapRef": {"name": one(manifests, "ConfigMap")["metadata"]["name"]}}]


def test_configmap_values_and_endpoint():
    data = one(render({"kubeflow": {"endpoint": "http://ml-pipeline.kubeflow:8888", "port": 8080},
                       "config": {"KFADAPTER_KFP_TIMEOUT": 45, "KFADAPTER_UPLOAD_ATTEMPTS": ""}}),
               "ConfigMap")["data"]
    assert data["KFADAPTER_KFP_ENDPOINT"] == "http://ml-pipeline.kubeflow:8888"
    assert data["KUBEFLOW_PORT"] == "8080"
    assert data["KFADAPTER_KFP_TIMEOUT"] == "45"
    assert data["KFADAPTER_UPLOAD_ATTEMPTS"] == ""


def test_object_store_defaults_to_seaweedfs_and_kfps_secret():
    c = container(render())
    secret_ref = {"name": "mlpipeline-minio-artifact", "optional": True}
    assert env_of(c)["KFADAPTER_OBJECT_STORE_ACCESS_KEY"] == {
        "name": "KFADAPTER_OBJECT_STORE_ACCESS_KEY", "valueFrom": {"secretKeyRef": {**secret_ref, "key": "accesskey"}}}
    assert env_of(c)["KFADAPTER_OBJECT_STORE_SECRET_KEY"] == {
        "name": "KFADAPTER_OBJECT_STORE_SECRET_KEY", "valueFrom": {"secretKeyRef": {**secret_ref, "key": "secretkey"}}}
    readme = (CHART / "README.md").read_text()
    assert "http://seaweedfs.kubeflow:9000" in readme and "http://minio-service.kubeflow:9000" in readme


def test_object_store_for_older_kfp_or_switched_off():
    older = render({"objectStore": {"endpoint": "http://minio-service.kubeflow:9000", "existingSecret": "s3-keys",
                                    "accessKeyKey": "id", "secretKeyKey": "key"}})
    assert one(older, "ConfigMap")["data"]["KFADAPTER_OBJECT_STORE_ENDPOINT"] == "http://minio-service.kubeflow:9000"
    ref = env_of(container(older))["KFADAPTER_OBJECT_STORE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "s3-keys", "key": "key", "optional": True}
    off = render({"objectStore": {"endpoint": ""}})
    assert "KFADAPTER_OBJECT_STORE_ENDPOINT" not in one(off, "ConfigMap")["data"]
    assert not {"KFADAPTER_OBJECT_STORE_ACCESS_KEY", "KFADAPTER_OBJECT_STORE_SECRET_KEY"} & set(env_of(container(off)))
    no_secret = env_of(container(render({"objectStore": {"existingSecret": ""}})))
    assert "KFADAPTER_OBJECT_STORE_ACCESS_KEY" not in no_secret


def test_config_checksum_rolls_the_pod():
    def annotations(overrides: dict) -> dict:
        return one(render(overrides), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    values = default_values()
    configmap_text = Renderer(CHART, values).render("configmap.yaml")
    assert annotations({})["checksum/config"] == hashlib.sha256(configmap_text.encode()).hexdigest()
    assert annotations({})["checksum/config"] != annotations({"trainingManager": {"port": 32003}})["checksum/config"]
    assert "checksum/secret" not in annotations({})


def test_pod_is_hardened():
    manifests = render()
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(manifests, "ServiceAccount")["metadata"]["name"]
    sc = container(manifests)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_probes_resources_and_image():
    manifests = render()
    c = container(manifests)
    assert c["image"] == "kfadapter:0.1.0"
    assert c["args"] == ["serve"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/liveness"
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40
    digest = "sha256:" + "a" * 64
    assert container(render({"image": {"digest": digest}}))["image"] == f"kfadapter@{digest}"
    assert container(render({"image": {"tag": "1.2.3", "repository": "reg/x"}}))["image"] == "reg/x:1.2.3"


def test_writable_paths_are_volumes():
    manifests = render()
    c = container(manifests)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/data": "data", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    pvc = one(manifests, "PersistentVolumeClaim")
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in pvc["spec"]
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}
    assert one(manifests, "ConfigMap")["data"]["KFADAPTER_STORE_PATH"].startswith("/data/")
    assert env_of(c)["TMPDIR"]["value"] == "/tmp"


def test_several_replicas_only_with_postgresql():
    values = default_values()
    jsonschema.validate(merge(values, {"replicaCount": 3, "store": {"url": "postgresql://u:p@db:5432/kf"}}),
                        schema())
    jsonschema.validate(merge(values, {"replicaCount": 2, "store": {"existingSecret": "kf-store"}}), schema())
    aimlfw = yaml.safe_load((CHART / "values-aimlfw-postgresql.yaml").read_text())
    jsonschema.validate(merge(values, aimlfw), schema())
    assert aimlfw["replicaCount"] > 1


def test_sqlite_store_renders_one_recreated_pod_without_pdb():
    manifests = render()
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(manifests, "PodDisruptionBudget") and not by_kind(manifests, "Secret")
    assert "KFADAPTER_STORE_URL" not in env_of(container(manifests))


def test_postgresql_store_from_the_chart_secret():
    url = "postgresql://kf:s3cret@tm-db-postgresql.traininghost:5432/kfadapter"
    manifests = render({"replicaCount": 3, "store": {"url": url}})
    secret = one(manifests, "Secret")
    assert secret["metadata"]["name"] == "kfadapter-store" and secret["stringData"] == {"url": url}
    ref = env_of(container(manifests))["KFADAPTER_STORE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kfadapter-store", "key": "url"}
    assert "s3cret" not in json.dumps(one(manifests, "ConfigMap"))
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert "checksum/store" in deployment["spec"]["template"]["metadata"]["annotations"]
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # No PVC: every replica reaches the same database, and /data is scratch.
    assert not by_kind(manifests, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_postgresql_store_from_an_existing_secret_with_one_replica():
    manifests = render({"store": {"existingSecret": "kfadapter-store", "secretKey": "dsn"}})
    assert not by_kind(manifests, "Secret") and not by_kind(manifests, "PodDisruptionBudget")
    ref = env_of(container(manifests))["KFADAPTER_STORE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kfadapter-store", "key": "dsn"}
    assert one(manifests, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_persistence_variants():
    disabled = render({"persistence": {"enabled": False}})
    assert not by_kind(disabled, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in one(disabled, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}

    existing = render({"persistence": {"existingClaim": "kept"}})
    assert not by_kind(existing, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in one(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "kept"}

    assert one(render({"persistence": {"storageClass": "-"}}), "PersistentVolumeClaim")["spec"][
        "storageClassName"] == ""
    assert one(render({"persistence": {"storageClass": "fast"}}), "PersistentVolumeClaim")["spec"][
        "storageClassName"] == "fast"


def test_no_token_by_default():
    manifests = render()
    assert not by_kind(manifests, "Secret")
    env = env_of(container(manifests))
    assert "KFADAPTER_KFP_TOKEN" not in env and "KFADAPTER_KFP_TOKEN_FILE" not in env


def test_token_from_a_chart_secret():
    manifests = render({"kubeflow": {"token": {"value": "s3cret"}}})
    secret = one(manifests, "Secret")
    assert secret["stringData"] == {"token": "s3cret"}
    ref = env_of(container(manifests))["KFADAPTER_KFP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "token"}
    assert "s3cret" not in json.dumps(one(manifests, "ConfigMap"))
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations


def test_token_from_an_existing_secret():
    manifests = render({"kubeflow": {"token": {"existingSecret": "kfp-token", "secretKey": "jwt"}}})
    assert not by_kind(manifests, "Secret")
    ref = env_of(container(manifests))["KFADAPTER_KFP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kfp-token", "key": "jwt"}


def test_projected_service_account_token():
    manifests = render({"kubeflow": {"serviceAccountToken": {"enabled": True}}})
    c = container(manifests)
    assert env_of(c)["KFADAPTER_KFP_TOKEN_FILE"]["value"] == TOKEN_FILE
    mount = next(m for m in c["volumeMounts"] if m["name"] == "kfp-token")
    assert mount == {"name": "kfp-token", "mountPath": TOKEN_FILE.rsplit("/", 1)[0], "readOnly": True}
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kfp-token"]["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "pipelines.kubeflow.org", "expirationSeconds": 7200,
                                 "path": TOKEN_FILE.rsplit("/", 1)[1]}}]


def test_network_policy_admits_only_the_training_manager():
    assert not by_kind(render(), "NetworkPolicy")
    manifests = render({"networkPolicy": {"enabled": True}})
    policy = one(manifests, "NetworkPolicy")["spec"]
    deployment = one(manifests, "Deployment")
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    tm, client = rule["from"]
    assert tm == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tm"}}}
    # The helm test pod carries the client label, so `helm test` passes with the policy on.
    test_pod = one(manifests, "Pod")
    assert client["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()

    # Helm merges maps: the default label stays unless set to null.
    other_ns = render({"networkPolicy": {"enabled": True, "trainingManager": {
        "podSelector": {"matchLabels": {"app": "tm", "app.kubernetes.io/name": None}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traininghost"}}},
        "extraFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}})
    peers = one(other_ns, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {"app": "tm"}},
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traininghost"}}}
    assert peers[2] == {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}


@pytest.mark.parametrize("overrides", [
    {},
    {"kubeflow": {"token": {"value": "t"}, "serviceAccountToken": {"enabled": True}},
     "networkPolicy": {"enabled": True, "trainingManager": {"namespaceSelector": {"matchLabels": {"a": "b"}}}},
     "persistence": {"storageClass": "-"}, "tmp": {"medium": "Memory"}},
    {"persistence": {"enabled": False}, "serviceAccount": {"create": False}},
    {"replicaCount": 2, "store": {"url": "postgresql://kf:pw@db:5432/kf"}, "networkPolicy": {"enabled": True}},
    yaml.safe_load((CHART / "values-oran.yaml").read_text()),
    yaml.safe_load((CHART / "values-kubeflow-multiuser.yaml").read_text()),
    {"extraVolumes": [{"name": "ca", "configMap": {"name": "kfp-ca"}}],
     "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/kfp-ca", "readOnly": True}],
     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "ScheduleAnyway"}]},
], ids=["defaults", "tokens-policy", "no-pvc", "postgresql", "oran", "multiuser", "extras"])
def test_manifests_fit_the_kubernetes_api(overrides):
    """Every object survives a round trip through the Kubernetes client's models: no unknown or mistyped field."""
    client = pytest.importorskip("kubernetes.client")
    api = client.ApiClient()
    for (kind, name), doc in render(overrides).items():
        model = api._ApiClient__deserialize(copy.deepcopy(doc), f"V1{kind}")
        assert api.sanitize_for_serialization(model) == doc, f"{kind} {name}: a field the API does not know"


def test_helm_test_pod_runs_kfadapter_check():
    manifests = render()
    pod = one(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [c] = pod["spec"]["containers"]
    # The adapter's own image asks the running pods to probe every dependency (GET /readiness?deep=true).
    assert c["image"] == container(manifests)["image"]
    assert c["args"] == ["check", "--url", "http://kfadapter.traininghost:5001", "--timeout", "10"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["restartPolicy"] == "Never"
    # The test pod must not match the Deployment's selector (its ReplicaSet would adopt it) nor the Service's.
    selector = one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    # An API token set through extraEnv reaches the check too (deep readiness needs it).
    token = {"name": "KFADAPTER_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    [c] = one(render({"extraEnv": [token]}), "Pod")["spec"]["containers"]
    assert c["env"] == [token]


def test_optional_pod_settings_render():
    manifests = render({
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "podLabels": {"team": "ran"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "high",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ran", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "extraEnv": [{"name": "KFADAPTER_POLL_INTERVAL", "value": "5"}],
        "tmp": {"medium": "Memory"},
        "serviceAccount": {"create": False, "name": "existing", "annotations": {"a": "b"}},
        "service": {"annotations": {"x": "y"}},
        "persistence": {"annotations": {"helm.sh/resource-policy": "keep"}},
    })
    deployment = one(manifests, "Deployment")
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["labels"]["team"] == "ran"
    spec = template["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["priorityClassName"] == "high"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == [{"key": "ran", "operator": "Exists"}]
    assert spec["serviceAccountName"] == "existing"
    assert not by_kind(manifests, "ServiceAccount")
    assert env_of(spec["containers"][0])["KFADAPTER_POLL_INTERVAL"]["value"] == "5"
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert one(manifests, "Service")["metadata"]["annotations"] == {"x": "y"}
    assert one(manifests, "PersistentVolumeClaim")["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep"}


def test_notes_render():
    values = default_values()
    notes = Renderer(CHART, values).render("NOTES.txt")
    assert "http://kfadapter.traininghost:5001" in notes
    assert "http://ml-pipeline-ui.kubeflow:80/pipeline" in notes
    assert "WARNING" not in notes
    other = Renderer(CHART, merge(values, {"persistence": {"enabled": False}}), namespace="ran").render("NOTES.txt")
    assert "kfadapter.ran" in other and "WARNING" in other


def test_renderer_rejects_what_helm_would():
    values = default_values()
    r = Renderer(CHART, values)
    with pytest.raises(TemplateError, match="not in values.yaml"):
        r._render_nodes(_parse_nodes(_tokenize("{{ .Values.nope.deeper }}"), 0, {}, ())[0], r.root, {"$": r.root})
    with pytest.raises(TemplateError, match="not supported"):
        r._render_nodes(_parse_nodes(_tokenize("{{ .Values.image | b64enc }}"), 0, {}, ())[0], r.root,
                        {"$": r.root})
    with pytest.raises(TemplateError, match="missing"):
        _parse_nodes(_tokenize("{{ if .Values.image }}x"), 0, {}, ())


# --------------------------------------------------------------------------------------------------------------
# The real helm, where there is one
# --------------------------------------------------------------------------------------------------------------

helm = shutil.which("helm")


@pytest.mark.skipif(helm is None, reason="helm is not on PATH")
def test_helm_lint():
    subprocess.run([helm, "lint", "--strict", str(CHART)], check=True, capture_output=True, text=True)


@pytest.mark.skipif(helm is None, reason="helm is not on PATH")
@pytest.mark.parametrize("overrides", [
    {},
    {"networkPolicy": {"enabled": True}, "kubeflow": {"token": {"value": "t"},
                                                      "serviceAccountToken": {"enabled": True}}},
])
def test_helm_template_matches_the_renderer(overrides, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(overrides))
    out = subprocess.run([helm, "template", "kfadapter", str(CHART), "--namespace", "traininghost",
                          "-f", str(values_file)], check=True, capture_output=True, text=True).stdout
    real = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    assert real == render(overrides)
