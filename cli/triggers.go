package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The webhooks and triggers commands: a tenant's webhooks and stream
// triggers (NATS, Kafka) on a server.

func init() {
	for k, c := range map[string]command{
		"webhooks create": {"NAME", 1, "Create a webhook and print its secret, once: the sender signs with it.", hookCreateCmd},
		"webhooks list":   {"", 0, "List webhooks (never their secrets).", trigListCmd(false)},
		"webhooks get":    {"NAME", 1, "Show a webhook.", trigGetCmd(false)},
		"webhooks update": {"NAME", 1, "Change a webhook's workflow, input template, state or verification, or rotate its secret.", trigUpdateCmd(false)},
		"webhooks delete": {"NAME", 1, "Delete a webhook.", trigDeleteCmd(false)},
		"triggers create": {"NAME", 1, "Create a NATS or Kafka trigger; the server starts consuming at once.", streamCreateCmd},
		"triggers list":   {"", 0, "List stream triggers with their consumers' state.", trigListCmd(true)},
		"triggers get":    {"NAME", 1, "Show a stream trigger and its consumer's state (connected, lag, last error).", trigGetCmd(true)},
		"triggers update": {"NAME", 1, "Change a stream trigger; its consumer restarts.", trigUpdateCmd(true)},
		"triggers delete": {"NAME", 1, "Delete a stream trigger; its consumer stops.", trigDeleteCmd(true)},
	} {
		commands[k] = c
	}
}

func hookCreateCmd(e *env) func([]string) error {
	workflow := e.fs.String("workflow", "", "the workflow: NAME or NAME@VERSION")
	verify := e.fs.String("verify", "github", "github, stripe or bearer")
	delivery := e.fs.String("delivery-header", "", "the header whose value dedups deliveries (X-GitHub-Delivery)")
	sigHeader := e.fs.String("signature-header", "", "github: the signature's header (default X-Hub-Signature-256)")
	input := e.fs.String("input", "", "input template: JSON or @FILE (default the body itself)")
	secret := e.fs.String("secret", "", "the secret (default a random one)")
	return func(args []string) error {
		in, err := readJSONArg("input", *input)
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		t, err := c.CreateWebhook(e.ctx, wire.CreateTriggerRequest{Name: args[0], Workflow: *workflow, Input: in, Secret: *secret,
			Webhook: &wire.WebhookConfig{Verify: *verify, DeliveryHeader: *delivery, SignatureHeader: *sigHeader}})
		if err != nil {
			return err
		}
		return e.print(t, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "webhook %s of %s: POST %s\nsecret %s (shown this once)\n", t.Name, t.Workflow, t.URL, t.Secret)
		})
	}
}

func streamCreateCmd(e *env) func([]string) error {
	kind := e.fs.String("kind", "", "nats or kafka")
	workflow := e.fs.String("workflow", "", "the workflow: NAME or NAME@VERSION")
	config := e.fs.String("config", "", `the nats or kafka block: JSON or @FILE, e.g. {"servers":["nats://h:4222"],"stream":"S"}`)
	input := e.fs.String("input", "", "input template: JSON or @FILE (default the payload itself)")
	return func(args []string) error {
		req := wire.CreateTriggerRequest{Name: args[0], Kind: *kind, Workflow: *workflow}
		var err error
		if req.Input, err = readJSONArg("input", *input); err != nil {
			return err
		}
		if err := streamConfig(*kind, *config, &req.NATS, &req.Kafka); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		t, err := c.CreateTrigger(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(t, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s trigger %s of %s: %s\n", t.Kind, t.Name, t.Workflow, t.State)
		})
	}
}

// streamConfig decodes --config into the block of kind.
func streamConfig(kind, config string, n **wire.NATSConfig, k **wire.KafkaConfig) error {
	raw, err := readJSONArg("config", config)
	if err != nil || raw == nil {
		return err
	}
	switch kind {
	case "nats":
		*n = &wire.NATSConfig{}
		return json.Unmarshal(raw, *n)
	case "kafka":
		*k = &wire.KafkaConfig{}
		return json.Unmarshal(raw, *k)
	}
	return fmt.Errorf("--config needs --kind nats or kafka")
}

func trigListCmd(stream bool) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		return func([]string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			var page *wire.TriggersPage
			if stream {
				page, err = c.ListTriggers(e.ctx)
			} else {
				page, err = c.ListWebhooks(e.ctx)
			}
			if err != nil {
				return err
			}
			return e.print(page, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tKIND\tWORKFLOW\tSTATE\tVERSION\tSTATUS")
				for _, t := range page.Triggers {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", t.Name, t.Kind, t.Workflow, t.State, t.Version, statusText(t.Status))
				}
			})
		}
	}
}

func statusText(s *wire.TriggerStatus) string {
	if s == nil {
		return "-"
	}
	out := fmt.Sprintf("connected=%t lag=%d messages=%d runs=%d errors=%d", s.Connected, s.Lag, s.Messages, s.RunsStarted, s.Errors)
	if s.LastError != "" {
		out += " last_error=" + clip(s.LastError, 80)
	}
	return out
}

func trigGetCmd(stream bool) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		return func(args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			var t *wire.Trigger
			if stream {
				t, err = c.GetTrigger(e.ctx, args[0])
			} else {
				t, err = c.GetWebhook(e.ctx, args[0])
			}
			if err != nil {
				return err
			}
			return e.print(t, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "%s %s of %s  %s  version %d  updated %s\n", t.Kind, t.Name, t.Workflow, t.State, t.Version, ts(t.UpdatedAt))
				if t.URL != "" {
					fmt.Fprintf(w, "url %s\n", t.URL)
				}
				if len(t.Input) > 0 {
					fmt.Fprintf(w, "input %s\n", clip(string(t.Input), 200))
				}
				if t.Status != nil {
					fmt.Fprintf(w, "status %s\n", statusText(t.Status))
				}
			})
		}
	}
}

func trigUpdateCmd(stream bool) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		workflow := e.fs.String("workflow", "", "a new workflow: NAME or NAME@VERSION")
		state := e.fs.String("state", "", "enabled or disabled")
		input := e.fs.String("input", "", "a new input template: JSON or @FILE (null removes it)")
		config := e.fs.String("config", "", "stream triggers: a new nats or kafka block (JSON or @FILE), with --kind")
		kind := e.fs.String("kind", "", "stream triggers: the kind of --config")
		verify := e.fs.String("verify", "", "webhooks: a new verification (github, stripe, bearer)")
		delivery := e.fs.String("delivery-header", "", "webhooks: with --verify, the delivery id header")
		rotate := e.fs.Bool("rotate-secret", false, "webhooks: make a new secret and print it, once")
		return func(args []string) error {
			req := wire.UpdateTriggerRequest{State: *state, RotateSecret: *rotate}
			if *workflow != "" {
				req.Workflow = workflow
			}
			var err error
			if req.Input, err = readJSONArg("input", *input); err != nil {
				return err
			}
			if *verify != "" {
				req.Webhook = &wire.WebhookConfig{Verify: *verify, DeliveryHeader: *delivery}
			}
			if err := streamConfig(*kind, *config, &req.NATS, &req.Kafka); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var t *wire.Trigger
			if stream {
				t, err = c.UpdateTrigger(e.ctx, args[0], req)
			} else {
				t, err = c.UpdateWebhook(e.ctx, args[0], req)
			}
			if err != nil {
				return err
			}
			return e.print(t, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "%s %s: %s, version %d\n", t.Kind, t.Name, t.State, t.Version)
				if t.Secret != "" {
					fmt.Fprintf(w, "secret %s (shown this once)\n", t.Secret)
				}
			})
		}
	}
}

func trigDeleteCmd(stream bool) func(e *env) func([]string) error {
	return func(e *env) func([]string) error {
		return func(args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if stream {
				err = c.DeleteTrigger(e.ctx, args[0])
			} else {
				err = c.DeleteWebhook(e.ctx, args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s\n", args[0])
			return nil
		}
	}
}
