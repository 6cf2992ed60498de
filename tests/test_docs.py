"""README.md and docs/*.md name only what exists: every `crosscart ...` command and flag they show, every
`METHOD /path` (and its `?query=` parameters), every `package.module.name` (and the keywords of a call
written out), every `CROSSCART_*` variable, `make` target and repository path in code. A renamed flag,
route or module fails here instead of in a reader's shell; so does an operation docs/api.md omits."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Python packages as the docs name them; other `crosscart.*` names are MLflow tags (`crosscart.metric`).
PACKAGES = ("commerce", "features", "models", "training", "experiments", "marketing", "serving", "bench")
PACKAGES += ("crosscart.cli", "crosscart.settings")


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _spans(text: str):
    """(position, content) of every inline code span outside fenced blocks, line breaks as spaces."""
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"`([^`]+)`", prose):
        yield m.start(), " ".join(m.group(1).replace("\\|", "|").split())


def _code(text: str):
    """(position, content) of every inline code span and every fenced block."""
    yield from _spans(text)
    for block in FENCE.finditer(text):
        yield block.start(), block.group(0)


def cli_invocations(text: str) -> list[tuple[int, str]]:
    """(line, command) of every `crosscart ...` in a fenced block (continuations joined, comments cut)
    or an inline code span."""
    found = []
    for block in FENCE.finditer(text):
        for offset, line in enumerate(block.group(0).replace("\\\n", " ").splitlines()):
            for part in re.split(r"&&|;", line.split(" # ")[0]):
                at = re.search(r"(?:^|[\s=(])(crosscart [^\s#].*)", part)
                if at:
                    found.append((_line(text, block.start()) + offset, at.group(1).strip()))
    for pos, span in _spans(text):
        for part in span.split("&&"):
            if part.strip().startswith("crosscart "):
                found.append((_line(text, pos), part.strip()))
    return found


def cli_problems(root, command: str) -> list[str]:
    """What `command` names that the click tree under `root` lacks. `a|b` lists alternatives, `[...]`
    marks optional parts and `...` stands for elided arguments."""
    tokens = command.replace("[", " ").replace("]", " ").split()[1:]
    nodes, problems = [root], []
    while tokens and all(hasattr(n, "commands") for n in nodes):
        token = tokens[0]
        if token.startswith("-") or token == "...":
            break
        nxt = []
        for node in nodes:
            for name in token.split("|"):
                if name in node.commands:
                    nxt.append(node.commands[name])
                else:
                    problems.append(f"no command {name!r}")
        if not nxt:
            return problems
        nodes, tokens = nxt, tokens[1:]
    leaves = [n for n in nodes if not hasattr(n, "commands")]
    for token in tokens:
        if not token.startswith("-") or re.fullmatch(r"-\d+", token):
            continue  # an argument or an option's value (`downgrade -1`)
        for flag in re.findall(r"--?[A-Za-z][\w-]*", token.split("=")[0]):
            if not leaves:
                problems.append(f"{flag} given to a command group")
            elif not any(flag in p.opts + p.secondary_opts for leaf in leaves for p in leaf.params):
                problems.append(f"no option {flag}")
    return problems


@pytest.fixture(scope="module")
def cli_root():
    from crosscart.cli import app

    return typer.main.get_command(app)


def test_the_cli_checker_catches_a_missing_command_or_flag(cli_root):
    assert cli_problems(cli_root, "crosscart serve [--host --port --workers N]") == []
    assert cli_problems(cli_root, "crosscart db upgrade|downgrade -1") == []
    assert cli_problems(cli_root, "crosscart serve --threads 4") == ["no option --threads"]
    assert cli_problems(cli_root, "crosscart db upgrade|migrate") == ["no command 'migrate'"]
    assert cli_problems(cli_root, "crosscart experiment simulate --aa|--pwr") == ["no option --pwr"]


def test_every_documented_cli_command_and_flag_exists(cli_root):
    seen, problems = 0, []
    for doc in DOCS:
        for line, command in cli_invocations(_text(doc)):
            seen += 1
            where = f"{doc.relative_to(ROOT)}:{line}: {command}"
            problems += [f"{where}: {p}" for p in cli_problems(cli_root, command)]
    assert seen > 100, "the docs' commands were not found: is the extraction broken?"
    assert problems == [], "\n".join(problems)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The app (its router matches paths as a request would) and its OpenAPI schema."""
    from crosscart.settings import Settings
    from serving.app import create_app

    var = tmp_path_factory.mktemp("docs")
    settings = Settings(data_dir=var, database_url=f"sqlite:///{var / 'api.db'}")
    app = create_app(settings, start_background=False)
    return app, app.openapi()


def _routed(app, method: str, path: str) -> bool:
    from starlette.routing import Match

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def _query_names(schema: dict, method: str, path: str) -> set[str] | None:
    """The query parameters of the operation whose OpenAPI path matches `path` (None: no single-segment
    match, as for a `{file:path}` parameter)."""
    for template, item in schema["paths"].items():
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return {p["name"] for p in item[method.lower()].get("parameters", []) if p["in"] == "query"}
    return None


def documented_endpoints(text: str):
    """(line, method, path, query names) for every `METHOD /path?query` in the prose; `POST|GET` and
    a last segment `a|b` list alternatives; the path may continue on the next line."""
    methods = "|".join(METHODS)
    endpoint = rf"\b((?:{methods})(?:[|/](?:{methods}))*)`?\s+`?(/[\w{{}}./|-]*)(\?[^`\s]*)?"
    for m in re.finditer(endpoint, text):
        path = m.group(2).rstrip(".")
        head, _, last = path.rpartition("/")
        query = {kv.split("=")[0] for kv in (m.group(3) or "?")[1:].split("&") if kv}
        for method in re.split(r"[|/]", m.group(1)):
            for segment in last.split("|"):
                yield _line(text, m.start()), method, f"{head}/{segment}", query


def test_every_documented_endpoint_and_query_parameter_exists(api):
    app, schema = api
    seen, problems = 0, []
    for doc in DOCS:
        for line, method, path, query in documented_endpoints(_text(doc)):
            seen += 1
            where = f"{doc.relative_to(ROOT)}:{line}: {method} {path}"
            if not _routed(app, method, path):
                problems.append(f"{where}: no such operation")
            elif unknown := query - (_query_names(schema, method, path) or query):
                problems.append(f"{where}: no query parameter {sorted(unknown)}")
    assert seen > 60, "the docs' endpoints were not found: is the extraction broken?"
    assert problems == [], "\n".join(problems)


def _resolve(ref: str):
    """The object `a.b.c` names (the longest importable module prefix, then attributes), else None."""
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return None
            obj = getattr(obj, name)
        return obj
    return None


def test_every_documented_python_name_exists_with_the_keywords_shown():
    prefix = "|".join(re.escape(p) for p in PACKAGES)
    name = re.compile(rf"(?<![\w./-])((?:{prefix})(?!\w)(?:\.[A-Za-z_]\w*)*)(?::(\w+))?(\([^()]*\))?")
    seen, problems = 0, []
    for doc in DOCS:
        text = _text(doc)
        for pos, span in _code(text):
            for m in name.finditer(span):
                ref = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
                if "." not in ref:
                    continue
                seen += 1
                where = f"{doc.relative_to(ROOT)}:{_line(text, pos)}: {ref}"
                obj = _resolve(ref)
                if obj is None:
                    problems.append(f"{where}: not found")
                    continue
                if m.group(3) and callable(obj):
                    params = inspect.signature(obj).parameters
                    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                        unknown = [k for k in re.findall(r"(\w+)=", m.group(3)) if k not in params]
                        problems += [f"{where}: no parameter {k!r}" for k in unknown]
    assert seen > 100, "the docs' Python names were not found: is the extraction broken?"
    assert problems == [], "\n".join(problems)


def test_every_documented_setting_exists():
    from crosscart.settings import Settings

    fields = {f.upper() for f in Settings.model_fields}
    sources = [p for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py")]
    code = "".join(p.read_text(encoding="utf-8") for p in sources)
    problems = [
        f"{doc.relative_to(ROOT)}: CROSSCART_{var}"
        for doc in DOCS
        for var in sorted(set(re.findall(r"CROSSCART_([A-Z0-9_]+)", _text(doc))))
        if var not in fields and f"CROSSCART_{var}" not in code  # test and bench variables live in code
    ]
    assert problems == [], "\n".join(problems)


def test_every_setting_is_documented():
    """The reverse of the check above: a setting no doc names is one a deployment cannot find (the
    delivery model's registered name was one). A setting read from another variable (prometheus_client's
    own) counts under that name."""
    from crosscart.settings import Settings

    docs = "".join(_text(doc) for doc in DOCS)
    missing = []
    for field, info in Settings.model_fields.items():
        names = [f"CROSSCART_{field.upper()}"]
        if info.validation_alias is not None:
            names = [name.upper() for name in info.validation_alias.choices]
        if not any(name in docs for name in names):
            missing.append(names[0])
    assert missing == [], "no README.md or docs/*.md names " + ", ".join(missing)


_DEFAULT = re.compile(
    r"`CROSSCART_(\w+)`\s*(?:\(|,\s*)(?:default:?\s*)?`?(\d[\d,]*(?:\.\d+)?)`?\s*(minutes\b)?"
)


def documented_setting_defaults(text: str):
    """(line, field, number) for every default written beside a variable in prose, as in
    "`CROSSCART_X` (30)", "`CROSSCART_X`, default 600" or "`CROSSCART_X` (15 minutes)" (a `_seconds`
    setting), the number in the field's own unit."""
    for m in _DEFAULT.finditer(text):
        number = float(m.group(2).replace(",", "")) * (60 if m.group(3) else 1)
        yield _line(text, m.start()), m.group(1).lower(), number


def test_the_checker_reads_a_default_written_beside_a_setting():
    text = (
        "(`CROSSCART_RATE_LIMIT_PER_MINUTE`, default 600), `CROSSCART_AUTH_CACHE_STALE_SECONDS` (15 minutes)"
    )
    assert list(documented_setting_defaults(text)) == [
        (1, "rate_limit_per_minute", 600.0),
        (1, "auth_cache_stale_seconds", 900.0),
    ]


def test_every_default_written_beside_a_setting_is_its_default():
    from crosscart.settings import Settings

    seen, problems = 0, []
    for doc in DOCS:
        for line, field, number in documented_setting_defaults(_text(doc)):
            seen += 1
            default = Settings.model_fields[field].default
            if float(default) != number:
                where = f"{doc.relative_to(ROOT)}:{line}: CROSSCART_{field.upper()}"
                problems.append(f"{where}: the doc says {number:g}, Settings has {default!r}")
    assert seen > 20, "the docs' defaults were not found: is the extraction broken?"
    assert problems == [], "\n".join(problems)


def test_every_documented_repository_path_exists():
    tracked = [p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in (".git", "var", ".venv")]
    path = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, tracked))})/[\w./*-]*\w)")
    named = [
        (f"{doc.relative_to(ROOT)}:{_line(_text(doc), pos)}", m.group(1))
        for doc in DOCS
        for pos, span in _code(_text(doc))
        for m in path.finditer(span)
    ]
    assert len(named) > 100, "the docs' paths were not found: is the extraction broken?"
    # a glob (`bench/results/closed_loop_fatigue*.json`) names several
    problems = [f"{where}: {name}" for where, name in named if not any(ROOT.glob(name))]
    assert problems == [], "\n".join(problems)


def test_the_readme_configuration_table_gives_the_settings_defaults():
    from crosscart.settings import Settings

    table = re.findall(r"^\| (`CROSSCART_[^|]+) \| ([^|]+) \|", _text(ROOT / "README.md"), re.M)
    assert len(table) > 15, "the README's configuration table was not found"
    problems = []
    for names, defaults in table:
        fields = [n.lower() for n in re.findall(r"`CROSSCART_(\w+)`", names)]
        shown = [d.strip().strip("`") for d in defaults.split(", ")]  # a default may hold commas
        for field, text in zip(fields, shown, strict=True):  # one default per variable
            default = Settings.model_fields[field].default
            if "$DATA_DIR" in text or text == "empty":  # empty: derived from the data directory, or off
                ok = default == ""
            elif text.startswith("a development key"):
                ok = isinstance(default, str) and "dev" in default
            elif re.fullmatch(r"[\d.]+", text):
                ok = float(text) == float(default)
            else:
                ok = text == str(default)
            if not ok:
                problems.append(f"CROSSCART_{field.upper()}: README says {text!r}, Settings has {default!r}")
    assert problems == [], "\n".join(problems)


def test_docs_api_md_documents_every_operation(api):
    _, schema = api
    api_md = _text(ROOT / "docs" / "api.md")
    documented = [(method, path) for _, method, path, _ in documented_endpoints(api_md)]
    missing = []
    for template, item in schema["paths"].items():
        inner = re.sub(r"\\\{\w+\\\}(?!$)", "[^/]+", re.escape(template))
        pattern = re.compile(re.sub(r"\\\{\w+\\\}$", ".+", inner))  # the last may span (`plots/{file}`)
        for method in item:
            if method.upper() in METHODS and not any(
                m == method.upper() and pattern.fullmatch(p) for m, p in documented
            ):
                missing.append(f"{method.upper()} {template}")
    assert missing == [], "docs/api.md does not mention:\n" + "\n".join(missing)


def test_the_python_examples_import_what_exists_and_call_it_with_its_parameters():
    """Every ```python block that parses (signature sketches with `*,` do not): its `from X import y`
    names exist and each call of an imported function binds to that function's signature."""
    import ast

    checked, problems = 0, []
    for doc in DOCS:
        text = _text(doc)
        for block in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
            try:
                tree = ast.parse(block.group(1))
            except SyntaxError:
                continue
            where = f"{doc.relative_to(ROOT)}:{_line(text, block.start())}"
            imported = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        if hasattr(module, alias.name):
                            imported[alias.asname or alias.name] = getattr(module, alias.name)
                        else:
                            problems.append(f"{where}: {node.module} has no {alias.name}")
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
            for call in calls:
                func = imported.get(call.func.id)
                if func is None:
                    continue
                checked += 1
                positional = [None] * sum(not isinstance(a, ast.Starred) for a in call.args)
                keywords = {k.arg: None for k in call.keywords}
                try:
                    inspect.signature(func).bind(*positional, **keywords)
                except TypeError as exc:
                    problems.append(f"{where}: {call.func.id}(...): {exc}")
    assert checked > 5, "the docs' Python examples were not found: is the extraction broken?"
    assert problems == [], "\n".join(problems)


def test_every_documented_make_target_exists():
    targets = set(re.findall(r"^([\w-]+):", _text(ROOT / "Makefile"), re.M))
    named = {
        (f"{doc.relative_to(ROOT)}:{_line(_text(doc), pos)}", target)
        for doc in DOCS
        for pos, code in _code(_text(doc))
        for target in re.findall(r"(?<![\w-])make ([\w-]+)", code)
    }
    assert {"run", "test"} <= {t for _, t in named}, "the README's two commands were not found"
    assert [f"{where}: make {t}" for where, t in sorted(named) if t not in targets] == []
