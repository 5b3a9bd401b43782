// Command caddy is Caddy with the standard modules and portalgate, for
// development and tests; releases are built with xcaddy (./xcaddy.sh build).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/kdesk/portalgate"
)

func main() {
	caddycmd.Main()
}
