"""The production manifests (``deploy/k8s/``): valid for the real kubeconform against
Kubernetes' and Strimzi's schemas, with nothing skipped, and in agreement with the hub they
deploy: a Deployment per service running ``serve <service>`` with its probes, the topics the
hub would create, settings the hub accepts, secrets only from Secret files.

The first run builds kubeconform and fetches the schemas (``deploy/kubeconform.py``: about
two minutes here, once); every later run finds them under ``.venv/kubeconform/``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from deploy import kubeconform
from deploy.kubeconform import KUBERNETES_VERSIONS, MANIFESTS, ToolError
from services.bootstrap import kafka_topics
from services.bootstrap.channels import channel_configs
from services.bootstrap.hub import SERVICES
from services.bootstrap.settings import Settings, load_settings
from services.router.config import parse_routing_config

pytestmark = pytest.mark.timeout(900)  # the first run builds kubeconform

Resource = dict[str, Any]

# Which topics each consumer group reads (services/bootstrap/bootstrap.py): its replicas
# beyond the fewest partitions among them would hold none.
CONSUMER_TOPICS = {
    "recorder": ("interactions_topic", "routing_topic"),
    "router": ("interactions_topic",),
    "outbound": ("outbound_topic",),
}
SINGLE = ("timeline", "desk", "email", "campaigns")  # one replica, never two at once


@pytest.fixture(scope="module")
def tools() -> kubeconform.Toolchain:
    return kubeconform.ensure()


@pytest.fixture(scope="module")
def resources() -> list[Resource]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        with path.open(encoding="utf-8") as f:
            found += [doc for doc in yaml.safe_load_all(f) if doc]
    assert found, f"no manifests in {MANIFESTS}"
    return found


def _of(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@pytest.fixture(scope="module")
def config(resources: list[Resource]) -> dict[str, str]:
    return _of(resources, "ConfigMap")["switchboard-config"]["data"]


@pytest.fixture(scope="module")
def deployments(resources: list[Resource]) -> dict[str, Resource]:
    """Each service's Deployment, by the service its container serves."""
    found: dict[str, Resource] = {}
    for deployment in _of(resources, "Deployment").values():
        args = _container(deployment)["args"]
        assert args[0] == "serve" and len(args) == 2, f"{deployment['metadata']['name']}: {args}"
        assert args[1] not in found, f"two Deployments serve {args[1]}"
        found[args[1]] = deployment
    return found


def _container(deployment: Resource) -> Resource:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# -- the schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_and_none_is_skipped(
    tools: kubeconform.Toolchain, resources: list[Resource], version: str
) -> None:
    report = kubeconform.validate([MANIFESTS], kubernetes_version=version, tools=tools)

    assert report.problems == [], "\n".join(report.lines())
    assert report.summary == {"valid": len(resources), "invalid": 0, "errors": 0, "skipped": 0}
    checked = sorted((r["kind"], r["name"]) for r in report.resources)
    assert checked == sorted((r["kind"], r["metadata"]["name"]) for r in resources)
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Deployment"} <= {k for k, _ in checked}


def _broken_deployment(resources: list[Resource]) -> Resource:
    deployment = copy.deepcopy(_of(resources, "Deployment")["switchboard-api"])
    deployment["spec"]["replicas"] = "two"
    return deployment


def _misspelt_probe(resources: list[Resource]) -> Resource:
    deployment = copy.deepcopy(_of(resources, "Deployment")["switchboard-recorder"])
    container = _container(deployment)
    container["livenesProbe"] = container.pop("livenessProbe")
    return deployment


def _broken_topic(resources: list[Resource], **spec: Any) -> Resource:
    topic = copy.deepcopy(_of(resources, "KafkaTopic")["sb.interactions.v1"])
    topic["spec"].update(spec)
    return topic


def _broken_listener(resources: list[Resource]) -> Resource:
    kafka = copy.deepcopy(next(iter(_of(resources, "Kafka").values())))
    kafka["spec"]["kafka"]["listeners"][0]["tls"] = "no"
    return kafka


def _old_topic_version(resources: list[Resource]) -> Resource:
    topic = copy.deepcopy(_of(resources, "KafkaTopic")["sb.interactions.v1"])
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"  # gone in Strimzi 1.x
    return topic


BROKEN = {
    "replicas as text": (_broken_deployment, "statusInvalid", "/spec/replicas"),
    "misspelt probe": (_misspelt_probe, "statusInvalid", "'livenesProbe' not allowed"),
    "partitions as text": (
        lambda rs: _broken_topic(rs, partitions="six"),
        "statusInvalid",
        "/spec/partitions",
    ),
    "misspelt topic field": (
        lambda rs: _broken_topic(rs, partitons=6),
        "statusInvalid",
        "'partitons' not allowed",
    ),
    "listener tls as text": (_broken_listener, "statusInvalid", "/spec/kafka/listeners/0/tls"),
    "a kind without a schema": (_old_topic_version, "statusError", "could not find schema"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_manifest_is_rejected(
    tools: kubeconform.Toolchain, resources: list[Resource], tmp_path: Path, case: str
) -> None:
    """The schemas are really applied, Strimzi's too, strictly, and a resource without a
    schema is an error rather than skipped."""
    make, status, says = BROKEN[case]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(make(resources)), encoding="utf-8")

    report = kubeconform.validate([path], tools=tools)

    assert not report.ok
    assert [r["status"] for r in report.resources] == [status]
    assert says in report.resources[0]["msg"]


def test_an_unreachable_go_proxy_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOPROXY", "http://127.0.0.1:9")  # nothing listens: refused at once
    with pytest.raises(ToolError) as caught:
        kubeconform.install_kubeconform(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    module = f"github.com/yannh/kubeconform@{kubeconform.KUBECONFORM_VERSION}"
    assert message.startswith(
        f"cannot fetch {module} from the Go module proxy (http://127.0.0.1:9)"
    )


def test_the_command_says_a_tool_error_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(**_: Any) -> None:
        raise ToolError("cannot fetch x from the Go module proxy (off):\n  dial tcp: refused")

    monkeypatch.setattr(kubeconform, "ensure", fail)
    assert kubeconform.main([]) == 2
    err = capsys.readouterr().err
    assert err == "kubeconform: cannot fetch x from the Go module proxy (off): dial tcp: refused\n"


# -- the hub they deploy ----------------------------------------------------------------------


def test_every_deployment_serves_a_service_and_every_service_has_one(
    deployments: dict[str, Resource],
) -> None:
    assert sorted(deployments) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_probed_scraped_sized_and_drained(
    deployments: dict[str, Resource], config: dict[str, str], service: str
) -> None:
    pod = deployments[service]["spec"]["template"]
    container = _container(deployments[service])
    port = int(config["SWITCHBOARD_HTTP_PORT"])

    assert container["command"] == ["switchboard"]
    assert container["args"] == ["serve", service]
    assert {"configMapRef": {"name": "switchboard-config"}} in container["envFrom"]
    assert config["SWITCHBOARD_HTTP_HOST"] == "0.0.0.0"
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    for probe, path in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ]:
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, bound
    # SIGTERM: the hub drains within SWITCHBOARD_DRAIN_SECONDS; the kubelet waits longer.
    drain = float(config["SWITCHBOARD_DRAIN_SECONDS"])
    assert pod["spec"]["terminationGracePeriodSeconds"] >= drain + 5
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def _partitions(resources: list[Resource]) -> dict[str, int]:
    return {
        topic["spec"].get("topicName", name): topic["spec"]["partitions"]
        for name, topic in _of(resources, "KafkaTopic").items()
    }


@pytest.mark.parametrize("service", sorted(CONSUMER_TOPICS))
def test_consumer_groups_scale_up_to_their_partitions(
    deployments: dict[str, Resource], resources: list[Resource], service: str
) -> None:
    spec = deployments[service]["spec"]
    topics = [Settings.model_fields[field].default for field in CONSUMER_TOPICS[service]]
    most = min(_partitions(resources)[t] for t in topics)

    assert 1 <= spec["replicas"] <= most
    # At `partitions` replicas a surge pod would hold no partition and never be ready.
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0


@pytest.mark.parametrize("service", SINGLE)
def test_single_followers_run_alone(deployments: dict[str, Resource], service: str) -> None:
    spec = deployments[service]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_the_api_is_replicated_behind_a_service(
    deployments: dict[str, Resource], resources: list[Resource]
) -> None:
    api = deployments["api"]
    env = {e["name"]: e["value"] for e in _container(api).get("env", [])}
    service = _of(resources, "Service")["switchboard-api"]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]

    assert api["spec"]["replicas"] >= 2
    assert "SWITCHBOARD_SESSION_SECRET_FILE" in env  # one secret for every replica
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert _of(resources, "PodDisruptionBudget")["switchboard-api"]["spec"]["minAvailable"] >= 1


async def test_the_topics_are_the_ones_the_hub_would_create(
    resources: list[Resource], config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[Any] = []

    class Admin:  # ensure_topics' view of Kafka: no topics yet
        def __init__(self, **_: Any) -> None: ...
        async def start(self) -> None: ...
        async def close(self) -> None: ...
        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, topics: list[Any], *_: Any, **__: Any) -> None:
            created.extend(topics)

    monkeypatch.setattr(kafka_topics, "AIOKafkaAdminClient", Admin)
    settings = Settings(
        topic_partitions=int(config["SWITCHBOARD_TOPIC_PARTITIONS"]),
        topic_replication=int(config["SWITCHBOARD_TOPIC_REPLICATION"]),
    )
    await kafka_topics.ensure_topics(settings, "kafka:9092")

    hub = {t.name: (t.num_partitions, t.replication_factor, dict(t.topic_configs)) for t in created}
    ours = {
        topic["spec"].get("topicName", name): (
            topic["spec"]["partitions"],
            topic["spec"]["replicas"],
            {key: str(value) for key, value in topic["spec"].get("config", {}).items()},
        )
        for name, topic in _of(resources, "KafkaTopic").items()
    }
    assert ours == hub
    # ... with the partitions the hub creates topics with when nobody says otherwise.
    default = Settings.model_fields["topic_partitions"].default
    assert config["SWITCHBOARD_TOPIC_PARTITIONS"] == str(default)


def test_the_topics_and_the_hub_name_the_kafka_cluster(
    resources: list[Resource], config: dict[str, str]
) -> None:
    (name, kafka), *others = _of(resources, "Kafka").items()
    assert not others
    plain = next(lis for lis in kafka["spec"]["kafka"]["listeners"] if not lis["tls"])

    assert config["SWITCHBOARD_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{plain['port']}"
    for topic in _of(resources, "KafkaTopic").values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name
    for pool in _of(resources, "KafkaNodePool").values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name


def test_everything_is_in_the_one_namespace(resources: list[Resource]) -> None:
    (namespace,) = _of(resources, "Namespace")
    for r in resources:
        if r["kind"] != "Namespace":
            assert r["metadata"].get("namespace") == namespace, r["metadata"]["name"]


def test_the_routing_config_map_is_a_valid_routing_configuration(
    resources: list[Resource], config: dict[str, str]
) -> None:
    routing = _of(resources, "ConfigMap")["switchboard-routing"]["data"]
    path = Path(config["SWITCHBOARD_ROUTING_CONFIG"])

    assert list(routing) == [path.name]
    parse_routing_config(routing[path.name], source=path.name)


def _mounted_files(deployment: Resource, secrets: dict[str, Resource]) -> dict[str, str]:
    """Every file the pod's Secret volumes put in it, with its content."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in _container(deployment)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            secret = secrets[volume["secret"]["secretName"]]
            for key, value in secret["stringData"].items():
                files[f"{mount['mountPath']}/{key}"] = value
    return files


@pytest.mark.parametrize("service", SERVICES)
def test_the_hub_accepts_each_pods_settings_with_secrets_from_files_only(
    deployments: dict[str, Resource],
    resources: list[Resource],
    config: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
) -> None:
    """The pod's environment, its Secret files and its routing file, loaded by the hub's
    own settings: no mistake, and no secret set but through a file the pod mounts."""
    deployment = deployments[service]
    container = _container(deployment)
    env = {**config, **{e["name"]: e["value"] for e in container.get("env", [])}}
    secret_settings = {
        f"SWITCHBOARD_{name.upper()}"
        for name, f in Settings.model_fields.items()
        if SecretStr in (f.annotation, *getattr(f.annotation, "__args__", ()))
    } | {"SWITCHBOARD_STORE", "SWITCHBOARD_EMAIL_SMTP_PASSWORD"}
    assert not secret_settings & set(env), "a secret in plain text"
    assert all("valueFrom" not in e for e in container.get("env", []))

    # Lay the pod's files out under tmp_path, and point its environment there.
    files = _mounted_files(deployment, _of(resources, "Secret"))
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    if "/etc/switchboard/routing" in mounts:
        routing = _of(resources, "ConfigMap")["switchboard-routing"]["data"]
        files.update({f"/etc/switchboard/routing/{k}": v for k, v in routing.items()})
    for inside, content in files.items():
        (tmp_path / inside.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / inside.lstrip("/")).write_text(content + "\n", encoding="utf-8")
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert value in files, f"{service}: {name}={value} is no file the pod mounts"
    for mailbox in json.loads(env.get("SWITCHBOARD_EMAIL_MAILBOXES", "[]")):
        assert mailbox["password_file"] in files, f"{service}: {mailbox['name']}'s password"

    def here(value: str) -> str:
        for inside in ("/run/secrets/", "/etc/switchboard/", "/var/lib/switchboard"):
            value = value.replace(inside, f"{tmp_path}{inside}")
        return value

    for name in [n for n in os.environ if n.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, here(value))
    settings = load_settings()
    channels = channel_configs(settings)

    assert settings.is_postgres
    assert settings.http_host == "0.0.0.0"
    assert settings.routing_config is not None and settings.routing_config.is_file()
    if service == "api":
        assert settings.session_secret is not None
        assert channels.voice is not None and channels.cti is not None
    if service == "outbound":
        assert channels.sms is not None and channels.smtp is not None
    if service == "email":
        assert [m.name for m in channels.mailboxes] == ["support"]
