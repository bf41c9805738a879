package ha

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// ControlPlanes is the election as GetFleetStatus shows it.
func (e *Election) ControlPlanes(ctx context.Context) (*controlplanev1.ControlPlanes, error) {
	st, err := e.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &controlplanev1.ControlPlanes{Leader: st.Leader}
	for _, m := range st.Members {
		out.Members = append(out.Members, &controlplanev1.ControlPlaneMember{
			Address: m.Address, Version: m.Version, Since: timestamppb.New(m.Since), Leader: m.Address == st.Leader,
		})
	}
	if f := st.LastFailover; f != nil {
		out.LastFailover = &controlplanev1.Failover{From: f.From, To: f.To, At: timestamppb.New(f.At)}
	}
	return out, nil
}
