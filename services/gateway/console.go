package gateway

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/services/gateway/admin"
	"github.com/amtsbote/amtsbote/services/gateway/console"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// mountConsole serves the operators' web console at /ui/ and the operator
// endpoints behind it.
func (g *Gateway) mountConsole(m *httpapi.Mux, api *httpapi.API, cfg Config, pub string, reg *prometheus.Registry, now func() time.Time) error {
	key, ok := cfg.Signer.Public.Key.(*rsa.PublicKey)
	if !ok {
		return errors.New("console: the signer has no RSA public key")
	}
	ccfg := console.Config{
		API: api, Store: cfg.Store, Key: key, KeyID: cfg.Signer.Public.KeyID, Issuer: pub,
		Routes: g.routes, Gatherer: reg, Overdue: cfg.Overdue, Now: now,
	}
	if len(ccfg.Overdue) == 0 {
		ccfg.Overdue = admin.DefaultOverdue
	}
	if cfg.Bus != nil {
		ccfg.Dead = cfg.Bus
	}
	c, err := console.New(ccfg)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	c.Routes(m)
	return nil
}
