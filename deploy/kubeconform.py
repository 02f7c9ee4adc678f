"""Validate the Kubernetes manifests (``deploy/k8s/``) with kubeconform, offline.

    python -m deploy.kubeconform                 # deploy/k8s against every pinned Kubernetes
    python -m deploy.kubeconform FILE_OR_DIR ... --kubernetes-version 1.37.0

Everything it needs is fetched once from the package registries, pinned by version and
checksum, and kept under ``.venv/kubeconform/`` (a second run takes about a second):

- **kubeconform** itself, built with ``go install`` from the Go module proxy (GOPATH, GOCACHE
  and GOMODCACHE under the cache; the Go checksum database vouches for the module, and its
  ``h1:`` sum is checked against the one pinned here).
- **Kubernetes' JSON schemas**: kubeconform downloads them from GitHub, which cannot be
  reached here; the PyPI wheel ``kubernetes-validate`` ships the same per-kind schemas, one
  folder per Kubernetes version, derived from Kubernetes' OpenAPI spec.  They ``$ref`` one
  ``_definitions.json`` through an absolute ``$id`` of their own; the refs are rewritten to
  the file beside them, so kubeconform's file loader resolves them.
- **Strimzi's CRD schemas** (``Kafka``, ``KafkaTopic``, ``KafkaNodePool`` …): Strimzi builds its
  CRDs with its own ``crd-generator`` from the classes of its ``api`` jar; both are on Maven
  Central, so Maven resolves them and the generator writes the same CRDs a Strimzi release
  installs.  Each served version's ``openAPIV3Schema`` becomes a JSON schema in the layout of
  kubeconform's CRD catalogue (``{group}/{kind}_{version}.json``), strict as kubeconform's own
  ``openapi2jsonschema.py`` makes them: an object with ``properties`` allows no others unless
  it says ``x-kubernetes-preserve-unknown-fields``.

kubeconform runs with ``-strict`` (unknown fields and duplicate keys are errors) and never
skips a kind: a resource whose schema is missing (or does not compile) is an error here.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "k8s"
CACHE = ROOT / ".venv" / "kubeconform"

KUBECONFORM_MODULE = "github.com/yannh/kubeconform"
KUBECONFORM_VERSION = "v0.8.0"  # needs Go 1.26 (its go.mod)
KUBECONFORM_SUM = "h1:loDYd3a3spjIFrauqW67CDKF55Oo9R6uvC8AvpVd4ug="  # go.sum's line for it

# The Kubernetes schemas: a wheel with one folder of JSON schemas per Kubernetes version.
SCHEMAS_WHEEL = "kubernetes-validate"
SCHEMAS_WHEEL_VERSION = "1.37.0"
SCHEMAS_WHEEL_SHA256 = "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
# Validated against each: the oldest Kubernetes the manifests claim to run on, and the newest.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")

# Strimzi's api classes and the generator Strimzi makes its CRDs with (Maven Central). Strimzi
# 1.2.0 serves only kafka.strimzi.io/v1; 0.49.0 to 0.51.0 serve v1 and v1beta2, 0.48.0 and
# older v1beta2 only (as their api classes say: checked by generating their CRDs).
STRIMZI_VERSION = "1.2.0"
STRIMZI_API_VERSION = "v1"
STRIMZI_JARS_SHA256 = {
    f"api-{STRIMZI_VERSION}.jar": (
        "566961ae5e5646a001ae91312beda5cba3a5d467e740e205e1b761754335fe4e"
    ),
    f"crd-generator-{STRIMZI_VERSION}.jar": (
        "76bb2430e702a1e6a24c071d26c865d5e9572cbc630d176d3b912033ae23ed00"
    ),
}
STRIMZI_KINDS = {  # kind -> the api class its CRD is generated from (as Strimzi's api/pom.xml)
    "Kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "KafkaNodePool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "KafkaUser": "io.strimzi.api.kafka.model.user.KafkaUser",
    "KafkaConnect": "io.strimzi.api.kafka.model.connect.KafkaConnect",
    "KafkaConnector": "io.strimzi.api.kafka.model.connector.KafkaConnector",
    "KafkaBridge": "io.strimzi.api.kafka.model.bridge.KafkaBridge",
    "KafkaMirrorMaker2": "io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2",
    "KafkaRebalance": "io.strimzi.api.kafka.model.rebalance.KafkaRebalance",
    "StrimziPodSet": "io.strimzi.api.kafka.model.podset.StrimziPodSet",
}
STRIMZI_JAVA = 21  # the generator's class files need Java 21 or newer
MAVEN_DEPENDENCY_PLUGIN = "3.8.1"

GO_TIMEOUT_S = 900.0  # a cold build: ~70 s here, mostly compiling
MAVEN_TIMEOUT_S = 600.0
PIP_TIMEOUT_S = 300.0

K8S_TEMPLATE = (
    "{{ .NormalizedKubernetesVersion }}-standalone-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json"
)
CRD_TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


class ToolError(RuntimeError):
    """kubeconform or its schemas could not be installed or run; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class Toolchain:
    """An installed kubeconform and the schema locations to hand it."""

    binary: Path
    kubernetes_schemas: Path  # holds v<version>-standalone-strict/ folders
    crd_schemas: Path  # holds <group>/<kind>_<version>.json

    @property
    def schema_locations(self) -> list[str]:
        return [f"{self.kubernetes_schemas}/{K8S_TEMPLATE}", f"{self.crd_schemas}/{CRD_TEMPLATE}"]


@dataclass
class Report:
    """kubeconform's verdict on every resource (its ``-output json -verbose``)."""

    kubernetes_version: str
    resources: list[dict[str, Any]]
    summary: dict[str, int]
    problems: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.problems = [r for r in self.resources if r.get("status") != "statusValid"]

    @property
    def ok(self) -> bool:
        return not self.problems and not any(
            self.summary.get(k, 0) for k in ("invalid", "errors", "skipped")
        )

    def lines(self) -> list[str]:
        s = self.summary
        head = (
            f"Kubernetes {self.kubernetes_version} + Strimzi {STRIMZI_VERSION}: "
            f"{len(self.resources)} resources, {s.get('valid', 0)} valid, "
            f"{s.get('invalid', 0)} invalid, {s.get('errors', 0)} errors, "
            f"{s.get('skipped', 0)} skipped"
        )
        return [head] + [
            f"  {r.get('filename')}: {r.get('kind')} {r.get('name')}: "
            f"{r.get('status', '').removeprefix('status').lower()}: {r.get('msg', '')}"
            for r in self.problems
        ]


# -- installing ------------------------------------------------------------------------------


def ensure(
    cache: Path = CACHE, kubernetes_versions: Sequence[str] = KUBERNETES_VERSIONS
) -> Toolchain:
    """kubeconform and every schema, installed under ``cache`` when missing (under a lock)."""
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        return Toolchain(
            binary=install_kubeconform(cache),
            kubernetes_schemas=install_kubernetes_schemas(cache, kubernetes_versions),
            crd_schemas=install_strimzi_schemas(cache),
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(text: str) -> None:
    print(f"kubeconform: {text}", file=sys.stderr, flush=True)


def _run(
    command: Sequence[str | Path], *, timeout: float, what: str, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [str(c) for c in command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as e:
        raise ToolError(f"{what}: cannot run {command[0]}: {e}") from None


def _last_line(*texts: str, prefer: str = "") -> str:
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    preferred = [ln for ln in lines if prefer and prefer in ln]
    return (preferred or lines or ["(no output)"])[-1]


_NETWORK_WORDS = re.compile(
    r"dial tcp|connection refused|no such host|i/o timeout|TLS handshake|network is unreachable"
    r"|Forbidden|Not Found|\b40[34]\b|\b5\d\d\b|timed out|Could not transfer|could not resolve",
    re.IGNORECASE,
)


def _go() -> str:
    found = shutil.which("go") or next(
        (str(p) for p in (Path("/usr/local/go/bin/go"),) if p.exists()), None
    )
    if found is None:
        raise ToolError(
            f"go is not installed: it is needed once to build {KUBECONFORM_MODULE}"
            f"@{KUBECONFORM_VERSION} (Go 1.26 or newer)"
        )
    return found


def _go_env(cache: Path) -> dict[str, str]:
    gopath = cache / "go"
    flags = os.environ.get("GOFLAGS", "")
    return {
        **os.environ,
        "GOPATH": str(gopath),
        "GOMODCACHE": str(gopath / "pkg" / "mod"),
        "GOCACHE": str(gopath / "cache"),
        "GOBIN": str(cache / "bin" / ".build"),
        # The module cache is read-only by default, which `rm -rf .venv` trips over.
        "GOFLAGS": f"{flags} -modcacherw".strip(),
        "CGO_ENABLED": "0",
    }


def install_kubeconform(cache: Path = CACHE) -> Path:
    """``go install github.com/yannh/kubeconform/cmd/kubeconform@<pinned>`` into the cache."""
    binary = cache / "bin" / f"kubeconform-{KUBECONFORM_VERSION}"
    if binary.exists():
        return binary
    go = _go()
    env = _go_env(cache)
    target = f"{KUBECONFORM_MODULE}/cmd/kubeconform@{KUBECONFORM_VERSION}"
    proxy = (
        env.get("GOPROXY")
        or _run([go, "env", "GOPROXY"], timeout=30, what="go env", env=env).stdout.strip()
    )
    _say(f"building {target} with go install (once; about a minute)")
    built = _run(
        [
            go,
            "install",
            "-trimpath",
            f"-ldflags=-s -w -X main.version={KUBECONFORM_VERSION}",
            target,
        ],
        timeout=GO_TIMEOUT_S,
        what=f"go install {target}",
        env=env,
    )
    if built.returncode != 0:
        line = _last_line(built.stderr, built.stdout)
        if _NETWORK_WORDS.search(built.stderr):
            raise ToolError(
                f"cannot fetch {KUBECONFORM_MODULE}@{KUBECONFORM_VERSION} from the Go module "
                f"proxy ({proxy}): {line}"
            )
        raise ToolError(f"go install {target} failed: {line}")
    # The module as downloaded must be the one pinned here (go.sum's h1: line).
    info = _run(
        [go, "mod", "download", "-json", f"{KUBECONFORM_MODULE}@{KUBECONFORM_VERSION}"],
        timeout=120,
        what="go mod download",
        env=env,
    )
    try:
        got = json.loads(info.stdout).get("Sum")
    except ValueError:
        got = None
    if got != KUBECONFORM_SUM:
        raise ToolError(
            f"{KUBECONFORM_MODULE}@{KUBECONFORM_VERSION} has checksum {got}, "
            f"expected {KUBECONFORM_SUM}"
        )
    built_binary = Path(env["GOBIN"]) / "kubeconform"
    version = _run([built_binary, "-v"], timeout=30, what="kubeconform -v").stdout.strip()
    if version != KUBECONFORM_VERSION:
        raise ToolError(f"the kubeconform built says it is {version!r}, not {KUBECONFORM_VERSION}")
    built_binary.replace(binary)
    # The compiled objects are not needed again (~110 MB); the module sources stay (~75 MB).
    _run([go, "clean", "-cache"], timeout=120, what="go clean", env=env)
    return binary


def install_kubernetes_schemas(
    cache: Path = CACHE, versions: Sequence[str] = KUBERNETES_VERSIONS
) -> Path:
    """Kubernetes' strict JSON schemas for each of ``versions``, from the pinned wheel (which
    has 1.25.0 to 1.37.0)."""
    root = cache / "schemas" / f"{SCHEMAS_WHEEL}-{SCHEMAS_WHEEL_VERSION}"
    missing = [v for v in versions if not (root / _k8s_folder(v) / ".complete").exists()]
    if not missing:
        return root
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            for version in missing:
                _extract_kubernetes_version(z, version, root / _k8s_folder(version))
    return root


def _k8s_folder(version: str) -> str:
    return f"v{version}-standalone-strict"  # kubeconform's {{ .NormalizedKubernetesVersion }}


def _download_wheel(folder: Path) -> Path:
    spec = f"{SCHEMAS_WHEEL}=={SCHEMAS_WHEEL_VERSION}"
    _say(f"downloading {spec} from PyPI (once; ~22 MB)")
    got = _run(
        [
            sys.executable,
            *("-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"),
            *("--disable-pip-version-check", "--dest", folder, spec),
        ],
        timeout=PIP_TIMEOUT_S,
        what=f"pip download {spec}",
    )
    wheels = sorted(folder.glob("*.whl"))
    if got.returncode != 0 or not wheels:
        raise ToolError(
            f"cannot fetch {spec} from PyPI: {_last_line(got.stderr, got.stdout, prefer='ERROR')}"
        )
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != SCHEMAS_WHEEL_SHA256:
        raise ToolError(f"{wheels[0].name} has sha256 {digest}, expected {SCHEMAS_WHEEL_SHA256}")
    return wheels[0]


def _extract_kubernetes_version(z: zipfile.ZipFile, version: str, target: Path) -> None:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
    if not names:
        raise ToolError(f"{SCHEMAS_WHEEL} {SCHEMAS_WHEEL_VERSION} has no schemas for {version}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in names:
        schema = json.loads(z.read(name))
        if not name.endswith("/_definitions.json"):
            # "$id": "https://kubernetes.io/api/…" would make the ref below resolve there.
            schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        (target / name.removeprefix(prefix)).write_text(text, encoding="utf-8")
    (target / ".complete").write_text(f"{SCHEMAS_WHEEL}=={SCHEMAS_WHEEL_VERSION}\n")


def install_strimzi_schemas(cache: Path = CACHE) -> Path:
    """Strimzi's CRDs, generated by Strimzi's crd-generator, as kubeconform JSON schemas."""
    root = cache / "schemas" / f"strimzi-{STRIMZI_VERSION}"
    if (root / ".complete").exists():
        return root
    build = cache / f"strimzi-{STRIMZI_VERSION}-build"
    crds = build / "crds"
    shutil.rmtree(crds, ignore_errors=True)  # no CRD left from a run that failed
    crds.mkdir(parents=True)
    classpath = _strimzi_classpath(build)
    java = _java(STRIMZI_JAVA)
    _say(f"generating Strimzi {STRIMZI_VERSION}'s CRDs with its crd-generator (once)")
    generated = _run(
        [java, "-cp", classpath, "io.strimzi.crdgenerator.CrdGenerator"]
        + ["--target-kube", "1.16+", "--crd-api-version", "v1"]
        + ["--api-versions", STRIMZI_API_VERSION, "--storage-version", STRIMZI_API_VERSION]
        + ["--yaml"]
        + [f"{cls}={crds / f'{kind}.yaml'}" for kind, cls in STRIMZI_KINDS.items()],
        timeout=MAVEN_TIMEOUT_S,
        what="Strimzi's crd-generator",
    )
    missing = [k for k in STRIMZI_KINDS if not (crds / f"{k}.yaml").exists()]
    if generated.returncode != 0 or missing:
        raise ToolError(
            f"Strimzi's crd-generator failed (exit {generated.returncode}, no CRD for "
            f"{', '.join(missing) or '-'}): {_last_line(generated.stderr, generated.stdout)}"
        )
    shutil.rmtree(root, ignore_errors=True)
    for kind in STRIMZI_KINDS:
        crd = _load_yaml(crds / f"{kind}.yaml")
        schemas = crd_json_schemas(crd)
        if not schemas:
            raise ToolError(f"Strimzi's {kind} CRD serves no version with a schema")
        for relative, schema in schemas.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, indent=1), encoding="utf-8")
    (root / ".complete").write_text(f"io.strimzi:api:{STRIMZI_VERSION}\n")
    return root


def _strimzi_pom() -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/kubeconform.py: Strimzi's api classes and its CRD generator. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.switchboard</groupId>
  <artifactId>strimzi-crds</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>api</artifactId>
      <version>{STRIMZI_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId>
      <version>{STRIMZI_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{MAVEN_DEPENDENCY_PLUGIN}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def _strimzi_classpath(build: Path) -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolError(f"mvn is not installed: it fetches Strimzi {STRIMZI_VERSION}'s jars")
    (build / "pom.xml").write_text(_strimzi_pom(), encoding="utf-8")
    out = build / "classpath.txt"
    out.unlink(missing_ok=True)
    _say(f"resolving io.strimzi:api:{STRIMZI_VERSION} and its crd-generator with Maven (once)")
    got = _run(
        [
            *(mvn, "-B", "-q", "--strict-checksums", "-f", build / "pom.xml"),
            *("dependency:build-classpath", f"-Dmdep.outputFile={out}"),
        ],
        timeout=MAVEN_TIMEOUT_S,
        what="mvn dependency:build-classpath",
    )
    if got.returncode != 0 or not out.exists():
        line = _last_line(got.stdout, got.stderr, prefer="ERROR")
        where = "from Maven Central" if _NETWORK_WORDS.search(got.stdout + got.stderr) else ""
        raise ToolError(f"cannot fetch io.strimzi:api:{STRIMZI_VERSION} {where}: {line}")
    classpath = out.read_text(encoding="utf-8").strip()
    jars = {Path(p).name: Path(p) for p in classpath.split(os.pathsep)}
    for name, expected in STRIMZI_JARS_SHA256.items():
        if name not in jars:
            raise ToolError(f"Maven resolved no {name}")
        digest = hashlib.sha256(jars[name].read_bytes()).hexdigest()
        if digest != expected:
            raise ToolError(f"{jars[name]} has sha256 {digest}, expected {expected}")
    return classpath


def _java(major: int) -> Path:
    """A Java of at least ``major``: JAVA_HOME's, the one on PATH, or one in /usr/lib/jvm."""
    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    homes += sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in homes:
        java = home / "bin" / "java"
        if java.exists() and _java_major(home) >= major:
            return java
    raise ToolError(
        f"Strimzi {STRIMZI_VERSION}'s crd-generator needs Java {major} or newer; none found "
        "(JAVA_HOME, PATH, /usr/lib/jvm)"
    )


def _java_major(home: Path) -> int:
    try:
        text = (home / "release").read_text(encoding="utf-8")
    except OSError:
        return 0
    found = re.search(r'^JAVA_VERSION="(1\.)?(\d+)', text, re.MULTILINE)
    return int(found.group(2)) if found else 0


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)  # a safe loader (C if built)


# -- CRD -> JSON schema ----------------------------------------------------------------------


def crd_json_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each served version of a CustomResourceDefinition as a strict JSON schema, by its path
    in kubeconform's CRD layout: ``{group}/{kind}_{version}.json`` (lower-case kind)."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    found = {}
    for version in spec.get("versions") or []:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None or not version.get("served", True):
            continue
        strict = _strict(copy.deepcopy(schema))
        strict["$schema"] = "http://json-schema.org/draft-04/schema#"  # OpenAPI 3.0's dialect
        strict.setdefault("properties", {})
        strict["properties"]["apiVersion"] = {
            "type": "string",
            "enum": [f"{group}/{version['name']}"],
        }
        strict["properties"]["kind"] = {"type": "string", "enum": [kind]}
        found[f"{group}/{kind.lower()}_{version['name']}.json"] = strict
    return found


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONES = ("not", "additionalItems")


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    """What Kubernetes' API server does with a structural schema, as plain JSON Schema:
    an object lists every field it may have (unless it preserves unknown fields), ``nullable``
    admits null, and ``x-kubernetes-int-or-string`` admits both."""
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and not any(k in node for k in _SCHEMA_LISTS):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for key in _SCHEMA_MAPS:
        for sub in (node.get(key) or {}).values():
            if isinstance(sub, dict):
                _strict(sub)
    for key in _SCHEMA_LISTS:
        for sub in node.get(key) or []:
            if isinstance(sub, dict):
                _strict(sub)
    for key in (*_SCHEMA_ONES, "additionalProperties"):
        if isinstance(node.get(key), dict):
            _strict(node[key])
    items = node.get("items")
    for sub in items if isinstance(items, list) else [items]:
        if isinstance(sub, dict):
            _strict(sub)
    return node


# -- validating ------------------------------------------------------------------------------


def validate(
    paths: Iterable[Path | str] = (MANIFESTS,),
    *,
    kubernetes_version: str = KUBERNETES_VERSIONS[0],
    tools: Toolchain | None = None,
) -> Report:
    """Run kubeconform -strict over ``paths``; every resource's verdict and the summary."""
    tools = tools or ensure(kubernetes_versions=[kubernetes_version])
    if not (tools.kubernetes_schemas / _k8s_folder(kubernetes_version)).is_dir():
        raise ToolError(f"no schemas for Kubernetes {kubernetes_version}: ensure() them first")
    command: list[str | Path] = [
        tools.binary,
        "-strict",
        "-summary",
        "-verbose",
        "-output",
        "json",
        "-kubernetes-version",
        kubernetes_version,
    ]
    for location in tools.schema_locations:
        command += ["-schema-location", location]
    ran = _run([*command, *paths], timeout=300, what="kubeconform")
    try:
        answer = json.loads(ran.stdout)
    except ValueError:
        raise ToolError(
            f"kubeconform exited {ran.returncode} without a report: "
            f"{_last_line(ran.stderr, ran.stdout)}"
        ) from None
    return Report(
        kubernetes_version=kubernetes_version,
        resources=answer.get("resources") or [],
        summary=answer.get("summary") or {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.kubeconform",
        description="Validate Kubernetes manifests with kubeconform -strict, against "
        "Kubernetes' and Strimzi's schemas (installed once under .venv/kubeconform).",
    )
    parser.add_argument("paths", nargs="*", type=Path, default=[MANIFESTS])
    parser.add_argument(
        "--kubernetes-version",
        action="append",
        help=f"repeatable; default: {', '.join(KUBERNETES_VERSIONS)}",
    )
    parser.add_argument("--install-only", action="store_true")
    args = parser.parse_args(argv)
    try:
        versions = args.kubernetes_version or KUBERNETES_VERSIONS
        tools = ensure(kubernetes_versions=versions)
        if args.install_only:
            print(tools.binary)
            return 0
        reports = [validate(args.paths, kubernetes_version=v, tools=tools) for v in versions]
    except ToolError as e:
        print(f"kubeconform: {e}", file=sys.stderr)
        return 2
    for report in reports:
        print("\n".join(report.lines()))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
