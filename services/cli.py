"""The `quartet` command: run the suite locally or drive it in Docker Compose.

  quartet run                      the four services as local processes (what `make run` does)
  quartet compose up|down|logs|ps  the same topology in containers, through python-on-whales
  quartet health                   each local service's health
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
    from services.common import health_probe
    from services.launcher import Topology

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from services.launcher import main as run_main

        return run_main()
    if args.command == "compose":
        return _compose(args)
    return _health(args)


if __name__ == "__main__":
    sys.exit(main())
