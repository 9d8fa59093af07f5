package cli

import (
	"fmt"
	"text/tabwriter"
)

// healthCmd asks the server whether it and its database answer (GET
// /health): exit 0 when they do, 1 when the database does not (503) or the
// server cannot be reached. It is the probe of a container's HEALTHCHECK,
// where no curl exists.
func healthCmd(e *env) func([]string) error {
	return func([]string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		h, err := c.Health(e.ctx)
		if err != nil {
			return err
		}
		return e.print(h, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s: server %s, database %s\n", e.server, h.Status, h.Database)
		})
	}
}
