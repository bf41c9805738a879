package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

func getAudit(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get audit", cf)
	out := outputFlag(fs)
	node := fs.String("node", "", "`ID` only the entries about this node, also once it is gone")
	limit := fs.Uint("limit", 0, "`N` the most entries to show; unset, the control plane's default")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("get audit takes no arguments; use --node ID")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	var resp *controlplanev1.ListAuditResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ListAudit(ctx, &controlplanev1.ListAuditRequest{NodeId: *node, Limit: uint32(*limit)})
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	return writeAudit(env.Stdout, resp.GetEntries())
}

// writeAudit lists audit entries, newest first, one a line: when (UTC),
// who with which role, what, and how it ended.
func writeAudit(w io.Writer, entries []*controlplanev1.AuditEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHO\tROLE\tRPC\tNODE\tRESULT\tREASON\tDETAIL")
	for _, e := range entries {
		var detail []string
		for _, s := range []string{e.GetParams(), display.FirstLine(e.GetMessage())} {
			if s != "" {
				detail = append(detail, s)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().UTC().Format(time.RFC3339),
			display.OrDash(e.GetWho()), display.Role(e.GetRole()), e.GetRpc(), display.OrDash(e.GetNodeId()), e.GetCode(),
			display.OrDash(display.FirstLine(e.GetReason())), display.OrDash(strings.Join(detail, "; ")))
	}
	return tw.Flush()
}
