package ha

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// caKey holds the pin of the CA the fleet's agents hold certificates
// from, set by the first control plane to start.
const caKey = "ha/ca-pin"

// CheckCA makes sure every control plane of the fleet signs and trusts
// agents with one CA: the first to start records its CA's pin (see
// rpcclient.Pin), and a control plane with another CA is refused, since
// the agents that joined through one would be strangers to the other.
func CheckCA(ctx context.Context, c *clientv3.Client, prefix, pin string) error {
	key := prefix + caKey
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, pin)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("ha: record the fleet's CA: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 || string(kvs[0].Value) == pin {
		return nil
	}
	return fmt.Errorf("pki: this control plane's CA (%s) is not the fleet's (%s): copy DATA_DIR/pki/ca.crt and ca.key from a control plane of the fleet to this one's data directory, then start it again (docs/ha.md)",
		pin, kvs[0].Value)
}

// NoFence is a fence that never holds, for a store opened before the
// election is won: every write is refused until Campaign's fence replaces
// it.
func NoFence(prefix string) Fence {
	return Fence{Key: prefix + electionKeys, CreateRevision: -1}
}
