package etcdstore

import clientv3 "go.etcd.io/etcd/client/v3"

// Client is the store's etcd client, for a caller that talks to the same
// cluster beside the store (the leader election): one connection serves
// both. It is closed with the store when the store opened it.
func (s *Store) Client() *clientv3.Client { return s.client }
