package badgerstore

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// putToken writes a token under t/<name> in the shared encoding
// (store.EncodeToken).
func putToken(txn *badger.Txn, t *store.Token) error {
	b, err := store.EncodeToken(t)
	if err != nil {
		return err
	}
	return txn.Set([]byte(prefixToken+t.Name), b)
}
