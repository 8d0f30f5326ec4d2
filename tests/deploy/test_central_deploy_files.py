"""deploy/central/ agrees with the code it starts: commands, settings, copied files, proxies."""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import shlex
import shutil
import string
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trustme
import typer
import yaml  # PyYAML: installed with schemathesis (dev); a real parser, not a regex
from pydantic_settings import BaseSettings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "central"
CONTAINERFILE = DEPLOY / "Containerfile"
COMPOSE = DEPLOY / "compose.yaml"
UNIT = DEPLOY / "locker-central.service"
ENV_EXAMPLE = DEPLOY / "central.env.example"
CADDYFILE = DEPLOY / "Caddyfile"
HAPROXY_TEMPLATE = DEPLOY / "haproxy.cfg"
PACKAGES = ("central", "carrier_adapters", "locker_node", "locker_wire")
# What compose.yaml reads from its .env, as an operator would give it.
COMPOSE_ENV = {
    "CENTRAL_DOMAIN": "central.test",
    "ACME_EMAIL": "ops@central.test",
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "LOCKER_SECRET_KEY": "f" * 64,
}
# Inside a container central listens on every interface; the proxy is another container.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
SERVE = ["serve", "--host", ALL_INTERFACES, "--port", "8000", "--workers", "2"]
LOCKER_NAME = re.compile(r"\bLOCKER_[A-Z0-9_]*[A-Z0-9]\*?|\bLOCKER_[A-Z0-9_]*\*")


# ---- the real command line and settings ------------------------------------------------------


class CommandLineError(ValueError):
    """`locker-central` would refuse these arguments (click's usage error, exit status 2)."""


def check_command_line(args: Sequence[str]) -> None:
    """Parse `locker-central <args>` as the real CLI would, without running it."""
    from central.cli import app

    # Duck-typed: Typer 0.29 carries its own copy of click, older ones use click itself.
    command: Any = typer.main.get_command(app)
    path = ["locker-central"]
    rest = list(args)
    while hasattr(command, "commands"):
        if not rest:
            raise CommandLineError(f"{' '.join(path)} needs a command")
        name, *rest = rest
        if name not in command.commands:
            raise CommandLineError(f"{' '.join(path)} has no command {name!r}")
        path.append(name)
        command = command.commands[name]
    try:
        with command.make_context(" ".join(path), rest):
            pass
    except Exception as exc:
        if getattr(exc, "exit_code", None) == 2:  # UsageError: unknown option, bad value
            raise CommandLineError(f"{' '.join([*path, *rest])}: {exc}") from exc
        raise


def settings_variables() -> set[str]:
    """Every LOCKER_* variable a settings class of the packages reads."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "env_prefix" in path.read_text(encoding="utf-8")
    }
    for module in modules:
        importlib.import_module(module)
    names: set[str] = set()
    for cls in subclasses(BaseSettings):
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        if cls.__module__ in modules and prefix.startswith("LOCKER_"):
            names |= {
                f"{prefix}{(f.alias or name).upper()}" for name, f in cls.model_fields.items()
            }
    return names


def subclasses(cls: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    sub: type[BaseSettings]
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


@pytest.fixture(scope="module")
def known_variables() -> set[str]:
    names = settings_variables()
    assert "LOCKER_DATABASE_URL" in names
    assert "LOCKER_CARRIER_USPS_CLIENT_ID" in names
    return names


def test_the_command_check_refuses_what_the_cli_would() -> None:
    check_command_line(SERVE)
    for wrong in (["serve", "--threads", "2"], ["serve", "--port", "eighty"], ["db", "migrate"]):
        with pytest.raises(CommandLineError):
            check_command_line(wrong)


# ---- the Containerfile -----------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: str


@dataclass
class Containerfile:
    instructions: list[Instruction]
    stage_images: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == name]

    def one(self, keyword: str, stage: str) -> Instruction:
        found = [i for i in self.stage(stage) if i.keyword == keyword]
        assert len(found) == 1, f"{stage} has {len(found)} {keyword} instructions"
        return found[0]


def parse_containerfile(text: str) -> Containerfile:
    """Instructions with their stage: comment lines dropped, continued lines joined."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the last instruction ends in a continuation"
    args: dict[str, str] = {}
    parsed = Containerfile([])
    stage = ""
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stage:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, stage = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
            stage = stage.strip() or str(len(parsed.stage_images))
            parsed.stage_images[stage] = image
        parsed.instructions.append(Instruction(keyword, rest, stage))
    return parsed


@dataclass
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None


def parse_copy(instruction: Instruction) -> Copy:
    words = json.loads(instruction.args) if instruction.args.startswith("[") else None
    if words is None:
        words = shlex.split(instruction.args)
    flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--")}
    paths = [w for w in words if not w.startswith("--")]
    return Copy(paths[:-1], paths[-1], flags.get("--from"))


def exec_form(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.args)
    assert isinstance(words, list), f"{instruction.keyword} is not in exec form"
    return [str(w) for w in words]


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line: its `&&` chain, each split as the shell would."""
    return [shlex.split(part) for part in run.split("&&")]


@pytest.fixture(scope="module")
def containerfile() -> Containerfile:
    return parse_containerfile(CONTAINERFILE.read_text(encoding="utf-8"))


def final_stage(containerfile: Containerfile) -> str:
    return list(containerfile.stage_images)[-1]


def env_of(containerfile: Containerfile, stage: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction in containerfile.stage(stage):
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                name, _, value = word.partition("=")
                found[name] = value
    return found


def test_the_image_is_built_in_stages_on_the_chosen_bases(containerfile: Containerfile) -> None:
    images = containerfile.stage_images
    assert images == {
        "assets": "node:20-bookworm-slim",
        "build": "python:3.11-slim-bookworm",
        "runtime": "python:3.11-slim-bookworm",
    }
    runtime = containerfile.stage("runtime")
    # No compiler and no package manager run in the image that ships.
    tools = r"\b(apt-get|apt|gcc|cc|make|build-essential)\b"
    assert not [i for i in runtime if i.keyword == "RUN" and re.search(tools, i.args)]


def test_the_image_runs_the_real_command_line(containerfile: Containerfile) -> None:
    stage = final_stage(containerfile)
    assert exec_form(containerfile.one("ENTRYPOINT", stage)) == ["locker-central"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["locker-central"] == "central.cli:main"
    cmd = exec_form(containerfile.one("CMD", stage))
    assert cmd == SERVE
    check_command_line(cmd)
    assert containerfile.one("EXPOSE", stage).args == "8000"
    assert containerfile.one("STOPSIGNAL", stage).args == "SIGTERM"


def test_the_image_runs_unprivileged_with_its_data_in_a_volume(
    containerfile: Containerfile,
) -> None:
    stage = final_stage(containerfile)
    user = containerfile.one("USER", stage).args
    assert user not in {"root", "0"}
    assert any(
        words[:2] == ["useradd", "--system"] and words[-1] == user
        for i in containerfile.stage(stage)
        if i.keyword == "RUN"
        for words in shell_commands(i.args)
    )
    data_dir = env_of(containerfile, stage)["LOCKER_DATA_DIR"]
    assert data_dir == "/var/lib/locker-central"
    assert json.loads(containerfile.one("VOLUME", stage).args) == [data_dir]
    assert containerfile.one("WORKDIR", stage).args == data_dir


def test_the_healthcheck_asks_healthz_with_python(containerfile: Containerfile) -> None:
    stage = final_stage(containerfile)
    check = containerfile.one("HEALTHCHECK", stage).args
    command = exec_form(Instruction("CMD", check[check.index("CMD ") + 4 :], stage))
    assert command[:2] == ["python", "-c"]
    cmd = exec_form(containerfile.one("CMD", stage))
    port = cmd[cmd.index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out, as Docker reads .dockerignore."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = "".join(
            ".*"
            if part == "**"
            else "[^/]*"
            if part == "*"
            else "[^/]"
            if part == "?"
            else part
            if part.startswith("[")
            else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?|\[[^\]]*\])", pattern)
        ).replace(".*/", "(.*/)?")
        rules.append((keep, re.compile(regex + "(/.*)?")))
    excluded = False
    for keep, rule in rules:
        if rule.fullmatch(path):
            excluded = not keep
    return excluded


def test_the_dockerignore_reading_is_right() -> None:
    assert dockerignore_excludes(".venv/bin/python")
    assert dockerignore_excludes("central/ops/frontend/node_modules/chart.js/package.json")
    assert dockerignore_excludes("central/__pycache__/app.cpython-311.pyc")
    assert dockerignore_excludes("central/stray.pyc")
    assert dockerignore_excludes("deploy/central/central.env")
    assert not dockerignore_excludes("deploy/central/central.env.example")
    assert not dockerignore_excludes("central/app.py")
    assert not dockerignore_excludes("pyproject.toml")


def test_files_copied_from_the_context_exist_and_are_in_it(containerfile: Containerfile) -> None:
    copies = [parse_copy(i) for i in containerfile.instructions if i.keyword == "COPY"]
    sources = [s for c in copies if c.from_stage is None for s in c.sources]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        kept = [p for p in files if not dockerignore_excludes(p.relative_to(ROOT).as_posix())]
        assert kept, f"COPY {source}: .dockerignore leaves all of it out"
    for copy in copies:
        if copy.from_stage is not None:
            assert copy.from_stage in containerfile.stage_images, copy


def test_the_build_stage_has_what_the_wheel_is_built_from(containerfile: Containerfile) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {
        pattern.rstrip("*")
        for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed |= {"pyproject.toml", project["project"]["readme"], *project["project"]["license-files"]}
    copied = {
        PurePosixPath(source).parts[0]
        for i in containerfile.stage("build")
        if i.keyword == "COPY"
        for source in parse_copy(i).sources
        if parse_copy(i).from_stage is None
    }
    assert needed <= copied


def make_assets_copies() -> set[tuple[str, str]]:
    """(file in node_modules, file in the vendor folder) for each file `make assets` copies."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    variables = dict(re.findall(r"^(\w+) := (.+)$", makefile, re.MULTILINE))
    recipe = makefile[makefile.index("$(VENDOR)/.stamp:") :].split("\n\n")[0]
    lines = [
        re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], line.strip())
        for line in recipe.splitlines()[1:]
    ]
    modules = f"{variables['FRONTEND']}/node_modules/"
    vendor = variables["VENDOR"] + "/"
    return copies_of([shlex.split(line) for line in lines], modules, vendor)


def copies_of(commands: list[list[str]], modules: str, vendor: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for words in commands:
        if not words or words[0] != "cp":
            continue
        *sources, dest = words[1:]
        for source in sources:
            target = f"{dest}{PurePosixPath(source).name}" if dest.endswith("/") else dest
            assert source.startswith(modules) and target.startswith(vendor), words
            found.add((source.removeprefix(modules), target.removeprefix(vendor)))
    return found


def test_the_assets_stage_copies_what_make_assets_copies(containerfile: Containerfile) -> None:
    runs = [i.args for i in containerfile.stage("assets") if i.keyword == "RUN"]
    commands = [words for run in runs for words in shell_commands(run)]
    npm = next(words for words in commands if words[:2] == ["npm", "ci"])
    assert "--ignore-scripts" in npm
    from_lock = {
        s
        for i in containerfile.stage("assets")
        if i.keyword == "COPY"
        for s in parse_copy(i).sources
    }
    assert from_lock == {
        "central/ops/frontend/package.json",
        "central/ops/frontend/package-lock.json",
    }
    assert copies_of(commands, "node_modules/", "/vendor/") == make_assets_copies()
    into_package = [
        parse_copy(i)
        for i in containerfile.stage("build")
        if i.keyword == "COPY" and parse_copy(i).from_stage == "assets"
    ]
    assert [(c.sources, c.dest) for c in into_package] == [
        (["/vendor/"], "central/ops/static/vendor/")
    ]


def test_the_wheel_carries_the_migrations_where_central_looks_for_them(
    containerfile: Containerfile,
) -> None:
    import tomllib

    import central
    from central.db import MIGRATIONS_DIR

    wanted = MIGRATIONS_DIR.relative_to(Path(central.__file__).resolve().parents[1])
    assert wanted.parts[0] == "migrations" and (ROOT / wanted / "env.py").is_file()
    # The build stage has them, and the wheel's package list takes them (beside `central`).
    copies = [parse_copy(i) for i in containerfile.stage("build") if i.keyword == "COPY"]
    assert any(c.sources == ["migrations/"] for c in copies)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "migrations*" in project["tool"]["setuptools"]["packages"]["find"]["include"]


# ---- compose.yaml and the Caddyfile ----------------------------------------------------------


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        present = name in env and (env[name] != "" or not op or not op.startswith(":"))
        if op in {":?", "?"} and not present:
            raise KeyError(f"{name}: {arg}")
        if op in {":-", "-"} and not present:
            return arg
        return env.get(name, "")

    pattern = r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    return re.sub(pattern, one, value)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def test_the_interpolation_reading_is_right() -> None:
    env = {"A": "a", "E": ""}
    assert interpolate("${A}/${B:-b}/${E:-e}/${E-e}/$$A", env) == "a/b/e//$A"
    with pytest.raises(KeyError):
        interpolate("${B:?set B}", env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    result: dict[str, Any] = interpolated(loaded, COMPOSE_ENV)
    return result


def central_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    image = compose["services"]["migrate"]["image"]
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == image and name != "migrate"
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_builds_the_image_from_the_repository(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"db", "migrate", "proxy"} <= set(services)
    for name, service in {"migrate": services["migrate"], **central_services(compose)}.items():
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, name
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == CONTAINERFILE, name
        assert service["env_file"] == "central.env", name
        assert (DEPLOY / f"{service['env_file']}.example") == ENV_EXAMPLE


def test_compose_commands_are_real(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    for name, service in {"migrate": migrate, **central_services(compose)}.items():
        if "command" in service:
            check_command_line(service["command"])
        assert "entrypoint" not in service, name


def test_compose_migrates_once_then_starts_several_centrals(compose: dict[str, Any]) -> None:
    db, migrate = compose["services"]["db"], compose["services"]["migrate"]
    assert db["image"] == "postgres:15"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["volumes"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    centrals = central_services(compose)
    assert len(centrals) >= 2
    for name, service in centrals.items():
        assert service["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }, name
        assert "command" not in service, f"{name} serves with the image's CMD, scheduler on"


def test_compose_points_central_at_its_database_and_proxy(compose: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    services = compose["services"]
    db_env = environment(services["db"])
    proxy_networks = set(services["proxy"]["networks"])
    for name, service in central_services(compose).items():
        env = environment(service)
        url = make_url(env["LOCKER_DATABASE_URL"])
        assert (url.host, url.port, url.database) == ("db", 5432, db_env["POSTGRES_DB"]), name
        assert (url.username, url.password) == (
            db_env["POSTGRES_USER"],
            db_env["POSTGRES_PASSWORD"],
        )
        assert env["LOCKER_PUBLIC_URL"] == f"https://{COMPOSE_ENV['CENTRAL_DOMAIN']}"
        # One key for all: what one central encrypts, another must read.
        assert env["LOCKER_SECRET_KEY"] == COMPOSE_ENV["LOCKER_SECRET_KEY"], name
        shared = proxy_networks & set(service["networks"])
        subnets = {
            ipaddress.ip_network(config["subnet"])
            for network in shared
            for config in compose["networks"][network]["ipam"]["config"]
        }
        assert subnets == {ipaddress.ip_network(env["LOCKER_TRUSTED_PROXIES"])}, name
    assert (DEPLOY / services["proxy"]["volumes"][0].split(":")[0]).resolve() == CADDYFILE


def caddy_upstreams() -> list[str]:
    text = CADDYFILE.read_text(encoding="utf-8")
    match = re.search(r"^\s*reverse_proxy ([^{\n]+)\{", text, re.MULTILINE)
    assert match is not None
    return match.group(1).split()


def test_caddy_sends_to_every_central_and_checks_healthz(
    compose: dict[str, Any], containerfile: Containerfile
) -> None:
    cmd = exec_form(containerfile.one("CMD", final_stage(containerfile)))
    port = cmd[cmd.index("--port") + 1]
    assert sorted(caddy_upstreams()) == sorted(
        f"{name}:{port}" for name in central_services(compose)
    )
    text = CADDYFILE.read_text(encoding="utf-8")
    assert re.search(r"^\s*health_uri /healthz$", text, re.MULTILINE)
    assert re.search(r"^\s*lb_policy ", text, re.MULTILINE)
    proxy = environment(compose["services"]["proxy"])
    assert set(re.findall(r"\{\$(\w+)\}", text)) <= set(proxy)


def test_caddy_accepts_the_caddyfile(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy)")
    result = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", str(CADDYFILE), "--validate"],
        env={**COMPOSE_ENV, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    adapted = json.loads(result.stdout)
    assert COMPOSE_ENV["CENTRAL_DOMAIN"] in json.dumps(adapted["apps"]["http"])


# ---- the systemd unit ------------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    """Directive -> values in order, over all sections (the unit's names do not repeat)."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_command(value: str) -> list[str]:
    words = shlex.split(value.lstrip("-@:+!"))
    assert PurePosixPath(words[0]).name == "locker-central", value
    return words[1:]


def test_the_unit_runs_real_commands() -> None:
    directives = unit_directives()
    (pre,) = directives["ExecStartPre"]
    (start,) = directives["ExecStart"]
    assert unit_command(pre) == ["db", "upgrade"]
    check_command_line(unit_command(pre))
    assert unit_command(start)[0] == "serve"
    check_command_line(unit_command(start))


def test_the_unit_is_hardened_and_restarts() -> None:
    directives = {key: values[-1] for key, values in unit_directives().items()}
    expected = {
        "Restart": "always",
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "ProtectKernelTunables": "true",
        "ProtectControlGroups": "true",
        "LockPersonality": "true",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "StateDirectory": "locker-central",
        "User": "locker",
    }
    assert {key: directives.get(key) for key in expected} == expected
    # The one place it may write is the one central writes to.
    assert directives["Environment"] == "LOCKER_DATA_DIR=/var/lib/locker-central"
    assert "ReadWritePaths" not in directives


# ---- settings named anywhere in deploy/central/ ----------------------------------------------


@pytest.mark.parametrize("path", sorted(DEPLOY.iterdir()), ids=lambda p: p.name)
def test_every_locker_variable_named_is_a_setting(path: Path, known_variables: set[str]) -> None:
    unknown = set()
    for name in LOCKER_NAME.findall(path.read_text(encoding="utf-8")):
        if name.endswith("*"):
            if not any(known.startswith(name[:-1]) for known in known_variables):
                unknown.add(name)
        elif name not in known_variables:
            unknown.add(name)
    assert unknown == set()


def example_assignments() -> dict[str, str]:
    """Every KEY=value of central.env.example, commented out or not, quotes taken off."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#? ?(LOCKER_\w+)=(.*)", line)
        if match:
            name, value = match.groups()
            assert name not in found, f"{name} twice"
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
            found[name] = value[1:-1] if quoted else value
    return found


def test_the_env_example_names_every_central_setting() -> None:
    from central.config import CentralSettings

    prefix = str(CentralSettings.model_config["env_prefix"])
    wanted = {f"{prefix}{name.upper()}" for name in CentralSettings.model_fields}
    assert wanted - set(example_assignments()) == set()


def test_the_env_example_values_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from carrier_adapters.settings import CarrierSettings
    from central.config import CentralSettings

    for name, value in example_assignments().items():
        if value:
            monkeypatch.setenv(name, value)
    settings = CentralSettings()
    assert settings.database_read_url is not None
    assert settings.sms_default_country_code == "+1"
    CarrierSettings()


# ---- HAProxy ---------------------------------------------------------------------------------


def render_haproxy_config(
    *,
    servers: Sequence[tuple[str, str]],
    cert_path: Path,
    http_bind: str = ":80",
    https_bind: str = ":443",
) -> str:
    """deploy/central/haproxy.cfg with real values; `servers` are (name, host:port) pairs."""
    template = string.Template(HAPROXY_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        HTTP_BIND=http_bind,
        HTTPS_BIND=https_bind,
        CERT_PATH=str(cert_path),
        CENTRAL_SERVERS="\n    ".join(f"server {name} {address}" for name, address in servers),
    )


def haproxy_check(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config, encoding="utf-8")
    return subprocess.run(
        [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_haproxy_template_has_only_its_documented_placeholders() -> None:
    template = string.Template(HAPROXY_TEMPLATE.read_text(encoding="utf-8"))
    assert template.is_valid()
    assert set(template.get_identifiers()) == {
        "HTTP_BIND",
        "HTTPS_BIND",
        "CERT_PATH",
        "CENTRAL_SERVERS",
    }
    text = HAPROXY_TEMPLATE.read_text(encoding="utf-8")
    for line in text.splitlines():
        assert not (line.lstrip().startswith("#") and "$" in line), f"placeholder in {line!r}"
    for needed in (
        "alpn h2,http/1.1",
        "http-request redirect scheme https",
        "balance leastconn",
        "option httpchk",
        "uri /healthz",
        "option forwardfor",
        "http-request set-header X-Forwarded-Proto https",
        "LOCKER_TRUSTED_PROXIES",
    ):
        assert needed in text, needed


def test_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_path = tmp_path / "central.pem"
    ca.issue_cert("central.test").private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    servers = [("central-a", "127.0.0.1:18001"), ("central-b", "127.0.0.1:18002")]
    config = render_haproxy_config(
        servers=servers,
        cert_path=cert_path,
        http_bind="127.0.0.1:18080",
        https_bind="127.0.0.1:18443",
    )
    result = haproxy_check(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    # The check can fail: a certificate that is not there is refused.
    missing = render_haproxy_config(servers=servers, cert_path=tmp_path / "absent.pem")
    assert haproxy_check(missing, tmp_path).returncode != 0
