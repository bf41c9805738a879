package badgerstore

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// putNodeKey writes a node's key binding under k/<node> in the shared
// encoding (store.EncodeNodeKey).
func putNodeKey(txn *badger.Txn, k *store.NodeKey) error {
	b, err := store.EncodeNodeKey(k)
	if err != nil {
		return err
	}
	return txn.Set([]byte(prefixNodeKey+k.NodeID), b)
}
