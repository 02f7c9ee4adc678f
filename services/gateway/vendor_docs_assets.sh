#!/usr/bin/env bash
# Refresh the API docs' vendored assets (Swagger UI and ReDoc) from the npm registry.
#
# Why vendored: the hub must serve its /docs and /redoc pages on a call center's locked-down
# network, where FastAPI's default pages (scripts from a CDN) stay blank. So the files ship in
# the package (services/gateway/static/docs/, package data) and services/gateway/docs.py serves
# them. No PyPI package ships them with their licences and pinned versions (fastapi-offline
# ships the scripts without the upstream licence files; swagger-ui-bundle is Swagger UI 4,
# which cannot read our OpenAPI 3.1 document).
#
# Update: change the pinned versions below, run this script (needs npm), then the docs tests:
#     bash services/gateway/vendor_docs_assets.sh
#     .venv/bin/python -m pytest tests/integration/test_api_docs_offline.py tests/browser
# (SWAGGER_UI=... REDOC=... in the environment try other versions without editing.)
# The files are copied byte for byte; VENDORED.txt records what came from where (with the
# registry's integrity hash) so a reviewer can check them. Source maps are left out (several MB,
# only a browser's developer tools ask for them). ReDoc stays on 2.x, the line FastAPI targets.
set -euo pipefail

SWAGGER_UI="${SWAGGER_UI:-5.35.0}"
REDOC="${REDOC:-2.5.4}"

dest="$(cd "$(dirname "$0")" && pwd)/static/docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch NAME VERSION -> unpacks into $work/NAME
  local spec="$1@$2"
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$work/$1"
  tar -xzf "$work/$1-$2.tgz" -C "$work/$1" --strip-components=1
  echo "$spec $(npm view "$spec" dist.integrity) $(npm view "$spec" license)" >>"$work/sources"
}

fetch swagger-ui-dist "$SWAGGER_UI"
fetch redoc "$REDOC"

rm -rf "$dest/swagger-ui" "$dest/redoc"
mkdir -p "$dest/swagger-ui" "$dest/redoc"
cp "$work/swagger-ui-dist/"{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css} \
  "$work/swagger-ui-dist/"{LICENSE,NOTICE} "$dest/swagger-ui/"
cp "$work/redoc/bundles/"{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} \
  "$work/redoc/LICENSE" "$dest/redoc/"

{
  echo "# Written by services/gateway/vendor_docs_assets.sh; do not edit by hand."
  echo "# npm package@version, registry integrity, licence:"
  cat "$work/sources"
  echo "# sha256 of each vendored file:"
  (cd "$dest" && sha256sum swagger-ui/* redoc/*)
} >"$dest/VENDORED.txt"
echo "vendored swagger-ui-dist $SWAGGER_UI and redoc $REDOC into $dest"
