package cli

import (
	"context"
	"flag"
	"fmt"
	"math"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// The token commands manage operator and agent tokens; each needs an
// admin token.

func runToken(ctx context.Context, cf *connFlags, args []string, env Env) error {
	if len(args) == 0 {
		return within("token", usagef("token needs what to do: create, list or revoke"))
	}
	what, args := args[0], args[1:]
	var err error
	switch what {
	case "-h", "-help", "--help":
		return helpError{groupUsage("token", "ACTION")}
	case "create":
		err = createToken(ctx, cf, args, env)
	case "list":
		err = listTokens(ctx, cf, args, env)
	case "revoke":
		err = revokeToken(ctx, cf, args, env)
	default:
		return within("token", usagef("token: unknown action %q (create, list, revoke)", what))
	}
	return within("token "+what, err)
}

func createToken(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("token create", cf)
	role := fs.String("role", "", "`viewer|operator|admin|agent` what the token allows: viewer reads, operator also changes the fleet, admin also manages tokens; agent lets agents join with navarch-agent --join-token, and nothing else; required")
	var ttl optionalDuration
	fs.Var(&ttl, "ttl", "`DURATION` how long the token works; unset, until it is revoked")
	uses := fs.Int64("uses", 0, "`N` for an agent token, how many agents may join with it; unset, no limit")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("token create needs exactly one token name")
	}
	if *role == "" {
		return usagef("token create needs --role %s", roleChoices())
	}
	r, ok := parseRole(*role)
	if !ok {
		return usagef("--role: %q is not %s", *role, roleChoices())
	}
	if ttl.set && ttl.d <= 0 {
		return usagef("--ttl: %s is not a positive duration", ttl.d)
	}
	usesSet := false
	fs.Visit(func(f *flag.Flag) { usesSet = usesSet || f.Name == "uses" })
	if usesSet && r != controlplanev1.Role_ROLE_AGENT {
		return usagef("--uses is only for an agent token (--role agent)")
	}
	if usesSet && (*uses < 1 || *uses > math.MaxUint32) {
		return usagef("--uses: %d is not a count from 1 to %d", *uses, uint32(math.MaxUint32))
	}
	req := &controlplanev1.CreateTokenRequest{Name: pos[0], Role: r, Uses: uint32(*uses)}
	if ttl.set {
		req.Ttl = durationpb.New(ttl.d)
	}
	var resp *controlplanev1.CreateTokenResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.CreateToken(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	// The token alone on stdout, for a script to capture; what it is, on
	// stderr, for the person who ran it.
	fmt.Fprintln(env.Stdout, resp.GetToken())
	info := resp.GetInfo()
	about := display.Role(info.GetRole())
	if info.GetRole() == controlplanev1.Role_ROLE_AGENT {
		about += ", " + agentsAllowed(info.GetMaxUses())
	}
	if e := info.GetExpiresAt(); e != nil {
		about += ", expires " + when(e, time.Now())
	} else {
		about += ", no expiry"
	}
	fmt.Fprintf(env.Stderr, "Token %s (%s) created. It is shown this once: the control plane keeps only its hash.\n",
		info.GetName(), about)
	if info.GetRole() == controlplanev1.Role_ROLE_AGENT {
		fmt.Fprintln(env.Stderr, "Agents join with it as navarch-agent --join-token TOKEN or NAVARCH_JOIN_TOKEN.")
	}
	return nil
}

// agentsAllowed says how many agents an agent token lets join.
func agentsAllowed(maxUses uint32) string {
	switch maxUses {
	case 0:
		return "any number of agents"
	case 1:
		return "one agent"
	}
	return fmt.Sprintf("up to %d agents", maxUses)
}

// usesCell is a token's USES cell: "used/max", "used/-" for an agent token
// without a limit, and nothing for the others, which no agent joins with.
func usesCell(t *controlplanev1.TokenInfo) string {
	if t.GetRole() != controlplanev1.Role_ROLE_AGENT {
		return ""
	}
	if t.GetMaxUses() == 0 {
		return fmt.Sprintf("%d/-", t.GetUsed())
	}
	return fmt.Sprintf("%d/%d", t.GetUsed(), t.GetMaxUses())
}

// when says when a token's moment comes or came: "in 23h", "2h ago";
// "never" for none.
func when(at *timestamppb.Timestamp, now time.Time) string {
	if at == nil {
		return "never"
	}
	if t := at.AsTime(); t.After(now) {
		return "in " + display.Age(now, t)
	}
	return display.Age(at.AsTime(), now) + " ago"
}

func listTokens(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("token list", cf)
	out := outputFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("token list takes no arguments")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	var resp *controlplanev1.ListTokensResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ListTokens(ctx, &controlplanev1.ListTokensRequest{})
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tUSES\tCREATED\tEXPIRES\tREVOKED")
	for _, t := range resp.GetTokens() {
		revoked := "-"
		if r := t.GetRevokedAt(); r != nil {
			revoked = when(r, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.GetName(), display.Role(t.GetRole()), usesCell(t),
			when(t.GetCreatedAt(), now), when(t.GetExpiresAt(), now), revoked)
	}
	return tw.Flush()
}

func revokeToken(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("token revoke", cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("token revoke needs exactly one token name")
	}
	var resp *controlplanev1.RevokeTokenResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.RevokeToken(ctx, &controlplanev1.RevokeTokenRequest{Name: pos[0]})
		return err
	})
	if err != nil {
		return err
	}
	info := resp.GetInfo()
	fmt.Fprintf(env.Stdout, "%s revoked (%s)\n", info.GetName(), display.Role(info.GetRole()))
	return nil
}
