"""``beatwatch model``: publish model versions into a root that running detectors watch.

``beatwatch model publish --from DIR --to ROOT`` copies a trained artifact into
``ROOT/versions/<model_version>/`` and switches ``ROOT/CURRENT`` to it, each
step an atomic rename; ``activate`` switches back to any published version
(a rollback); ``list`` shows the versions and which one is current. A detector
started with ``--model ROOT`` picks the switch up without a restart. The
layout is described in :mod:`beatwatch.model_store`.
"""

from __future__ import annotations

import argparse

from beatwatch.errors import ArtifactError
from beatwatch.model_store import activate, is_model_root, list_versions, publish, read_pointer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``beatwatch model``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish_parser = actions.add_parser(
        "publish", help="copy an artifact into a model root and make it current"
    )
    publish_parser.add_argument(
        "--from", dest="source", required=True, help="the artifact directory (beatwatch train)"
    )
    publish_parser.add_argument(
        "--to", dest="root", required=True, help="the model root detectors watch (made if missing)"
    )
    publish_parser.add_argument(
        "--no-switch", action="store_true", help="publish the version without making it current"
    )
    activate_parser = actions.add_parser(
        "activate", help="make a published version current (also to roll back)"
    )
    activate_parser.add_argument("--root", required=True, help="the model root")
    activate_parser.add_argument("version", help="a version listed by 'beatwatch model list'")
    list_parser = actions.add_parser("list", help="the versions of a model root; * marks current")
    list_parser.add_argument("root", help="the model root")


def main(args: argparse.Namespace) -> int:
    """Run one ``beatwatch model`` action."""
    if args.action == "publish":
        artifact = publish(args.source, args.root, switch=not args.no_switch)
        state = "published" if args.no_switch else "published and current"
        print(f"{artifact.model_version} {state} in {args.root}")
    elif args.action == "activate":
        artifact = activate(args.root, args.version)
        print(f"{artifact.model_version} current in {args.root}")
    else:
        if not is_model_root(args.root) and not list_versions(args.root):
            raise ArtifactError(f"{args.root} is not a model root (no CURRENT, no versions/)")
        current = read_pointer(args.root).split("/", 1)[1] if is_model_root(args.root) else None
        for version in list_versions(args.root):
            print(f"{'*' if version == current else ' '} {version}")
    return 0
