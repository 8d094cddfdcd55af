"""The `quartet` command: run the suite locally or drive it in Docker Compose.

  quartet run                      the four services as local processes (what `make run` does)
  quartet compose up|down|logs|ps  the same topology in containers, through python-on-whales
  quartet health                   each local service's health
  quartet keygen                   a new Fernet key for ENCRYPTION_KEY
  quartet chat --prompt TEXT       stream one answer from the gateway and time its first token
               [--encrypt] [--url URL] [--model ID] [--max-tokens N] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"


def compose_client(compose_file: Path = COMPOSE_FILE):
    """A python-on-whales client bound to the project's compose file."""
    from python_on_whales import DockerClient

    return DockerClient(compose_files=[compose_file], compose_project_directory=compose_file.parent)


def _compose(args: argparse.Namespace) -> int:
    from python_on_whales.exceptions import DockerException

    docker = compose_client()
    try:
        if args.action == "up":
            docker.compose.up(detach=args.detach, build=args.build, wait=args.detach)
        elif args.action == "down":
            docker.compose.down(volumes=args.volumes)
        elif args.action == "logs":
            for _source, line in docker.compose.logs(follow=args.follow, stream=True):
                sys.stdout.write(line.decode(errors="replace"))
        elif args.action == "ps":
            for container in docker.compose.ps():
                health = container.state.health.status if container.state.health else "-"
                print(f"{container.name:32} {container.state.status:10} {health}")
        elif args.action == "config":
            print(json.dumps(docker.compose.config(return_json=True), indent=2))
    except DockerException as error:
        print(f"docker compose {args.action} failed: {error}", file=sys.stderr)
        print("Is a Docker engine running, and is the Compose v2 plugin installed?", file=sys.stderr)
        return 1
    return 0


def _health(_args: argparse.Namespace) -> int:
    from quartet.services.common import health_probe
    from quartet.services.launcher import Topology

    topology = Topology.from_env(dict(os.environ))
    rows = {
        "engine": health_probe.grpc_status(topology.engine_address),
        "memory": health_probe.grpc_status(topology.memory_address),
        "router": health_probe.grpc_status(topology.router_address),
        "gateway": health_probe.http_status(f"{topology.gateway_url}/healthz"),
    }
    for name, status in rows.items():
        print(f"{name:8} {status}")
    return 0 if all(status == "SERVING" for status in rows.values()) else 1


def _keygen(_args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


class _ChatFailed(Exception):
    pass


def _opened(payload: dict, fernet) -> dict:
    """A JSON answer of the gateway, opened when it came sealed."""
    if fernet is not None and list(payload) == ["encrypted"]:
        return json.loads(fernet.decrypt(payload["encrypted"].encode()))
    return payload


def _chat_stream(http, body: dict, fernet) -> tuple[float | None, int]:
    """Print the answer's text as it arrives; the seconds to its first piece and the number of events."""
    started = time.monotonic()
    first: float | None = None
    events = 0
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            raise _ChatFailed(f"HTTP {reply.status_code}: {json.dumps(_opened(json.loads(reply.read()), fernet))}")
        for line in reply.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                break
            event = _opened(json.loads(data), fernet)
            events += 1
            if "error" in event:
                raise _ChatFailed(f"the stream failed: {event['error'].get('message')}")
            for choice in event.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    first = first if first is not None else time.monotonic() - started
                    sys.stdout.write(text)
                    sys.stdout.flush()
    return first, events


def _chat(args: argparse.Namespace) -> int:
    """Send one prompt, stream the answer, print the time to first token (the worker's sanity check)."""
    import httpx

    from quartet.services.launcher import Topology

    url = (args.url or os.environ.get("QUARTET_URL") or Topology.from_env(dict(os.environ)).gateway_url).rstrip("/")
    fernet = None
    if args.encrypt:
        from cryptography.fernet import Fernet

        key = os.environ.get("ENCRYPTION_KEY", "").split(",")[0].strip()
        if not key:
            print("--encrypt needs ENCRYPTION_KEY in the environment (see `quartet keygen`)", file=sys.stderr)
            return 2
        fernet = Fernet(key.encode())
    api_key = args.api_key or os.environ.get("QUARTET_API_KEY") or os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(args.timeout, connect=10)) as http:
            model = args.model
            if not model:
                listed = http.get("/v1/models")
                if listed.status_code != 200:
                    raise _ChatFailed(f"GET /v1/models: HTTP {listed.status_code}: {listed.text}")
                model = listed.json()["data"][0]["id"]
            body: dict = {
                "model": model,
                "messages": [{"role": "user", "content": args.prompt}],
                "stream": True,
                "max_tokens": args.max_tokens,
            }
            if fernet is not None:
                body = {"encrypted": fernet.encrypt(json.dumps(body).encode()).decode()}
            started = time.monotonic()
            first, events = _chat_stream(http, body, fernet)
    except (httpx.HTTPError, _ChatFailed) as error:
        print(f"\nchat failed: {error}", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    print()
    ttft = f"{first:.3f} s" if first is not None else "no text received"
    sealed = " (encrypted)" if fernet is not None else ""
    print(f"time to first token: {ttft}; {events} events in {total:.3f} s{sealed}", file=sys.stderr)
    return 0 if first is not None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quartet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the four services as local processes")
    compose = commands.add_parser("compose", help="drive compose.yaml through Docker Compose")
    compose.add_argument("action", choices=["up", "down", "logs", "ps", "config"])
    compose.add_argument("-d", "--detach", action="store_true", help="up: run in the background and wait for health")
    compose.add_argument("--build", action="store_true", help="up: build images first")
    compose.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    compose.add_argument("-v", "--volumes", action="store_true", help="down: also remove the data volumes")
    commands.add_parser("health", help="health of each locally running service")
    commands.add_parser("keygen", help="print a new Fernet key (for ENCRYPTION_KEY)")
    chat = commands.add_parser("chat", help="stream one answer from the gateway and print the time to first token")
    chat.add_argument("--prompt", required=True, help="the user message")
    chat.add_argument("--encrypt", action="store_true", help="seal the request and open each event with ENCRYPTION_KEY")
    chat.add_argument("--url", help="the gateway (default: QUARTET_URL, else http://127.0.0.1:$PORT)")
    chat.add_argument("--model", help="model id (default: the first the gateway lists)")
    chat.add_argument("--max-tokens", type=int, default=64, help="most tokens to generate (default 64)")
    chat.add_argument("--api-key", help="Bearer key (default: QUARTET_API_KEY or OPENAI_API_KEY)")
    chat.add_argument("--timeout", type=float, default=300, help="seconds to wait for the answer (default 300)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from quartet.services.launcher import main as run_main

        return run_main()
    if args.command == "compose":
        return _compose(args)
    if args.command == "keygen":
        return _keygen(args)
    if args.command == "chat":
        return _chat(args)
    return _health(args)


if __name__ == "__main__":
    sys.exit(main())
