// Package portalgate is a Caddy plugin that puts a sign-in gate in front
// of a customer-support contact portal. Importing it registers every module
// and the Caddyfile syntax: xcaddy build --with github.com/kdesk/portalgate
package portalgate

import (
	_ "github.com/kdesk/portalgate/caddyfile"
	_ "github.com/kdesk/portalgate/module"
	_ "github.com/kdesk/portalgate/storage/badgerstore"
	_ "github.com/kdesk/portalgate/storage/redisstore"
)
