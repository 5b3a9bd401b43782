#!/usr/bin/env bash
# portalgate's build, demo and test entry points.
#
#   ./xcaddy.sh build   writes ./caddy: Caddy with portalgate, built by xcaddy
#   ./xcaddy.sh run     builds, then runs the demo portal on http://localhost:8080
#   ./xcaddy.sh test    runs the whole test suite (go vet, gofmt, go test -race)
#   ./xcaddy.sh bench   builds, then runs the Go benchmarks and portalbench
#                       (gated vs bare reverse_proxy; Badger, and Redis when
#                       redis-server is installed)
set -euo pipefail
cd "$(dirname "$0")"

CADDY_VERSION=v2.11.9
XCADDY="github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5"

build() {
	# xcaddy runs through `go run` at a pinned version: nothing is installed.
	echo "building ./caddy (Caddy $CADDY_VERSION with portalgate); the first build compiles Caddy and takes a few minutes on a small machine" >&2
	XCADDY_SKIP_CLEANUP=0 go run "$XCADDY" build "$CADDY_VERSION" \
		--with github.com/kdesk/portalgate@v0.0.0=. \
		--output ./caddy
	./caddy list-modules | grep -E '^(portal|http.handlers.portal_auth|admin.api.portal|portal.storage)' >/dev/null
	echo "built ./caddy ($(./caddy version | head -1)) with portalgate"
}

case "${1:-}" in
build)
	build
	;;
run)
	build
	cd integration/demo
	echo "demo portal: http://localhost:8080  (sign in as jane@acme.example; the code is printed below)"
	echo "second workspace, own brand, de/fr/en: http://globex.localhost:8080  (sign in as lena@globex.example)"
	exec ../../caddy run --config Caddyfile --adapter caddyfile
	;;
test)
	shift || true
	unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
	if [ -n "$unformatted" ]; then
		echo "gofmt would change: $unformatted" >&2
		exit 1
	fi
	go vet ./...
	go test -race -count=1 -timeout 30m "$@" ./...
	;;
bench)
	build
	go test -run '^$' -bench . -benchtime 3s ./handlers/
	GOMEMLIMIT=100MiB go test -run '^$' -bench 'SessionCheck100k' -benchtime 3s ./handlers/
	go run ./cmd/portalbench -caddy ./caddy -storage badger -sessions 100000
	if command -v redis-server >/dev/null; then
		go run ./cmd/portalbench -caddy ./caddy -storage redis
	fi
	;;
*)
	echo "usage: $0 build|run|test|bench" >&2
	exit 2
	;;
esac
