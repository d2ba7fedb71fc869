package app

import (
	"slices"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// holdLocked holds e among tenant's open conversations; st.mu is held.
// Ids are UUIDv7, so a new conversation's id sorts last and is appended.
func (st *state) holdLocked(tenant, id string, e *entry) {
	byID := st.open[tenant]
	if byID == nil {
		byID = make(map[string]*entry)
		st.open[tenant] = byID
	}
	if _, ok := byID[id]; !ok {
		ids := st.sorted[tenant]
		if i, found := slices.BinarySearch(ids, id); !found {
			st.sorted[tenant] = slices.Insert(ids, i, id)
		}
	}
	byID[id] = e
}

// unholdLocked drops the conversation from tenant's open ones; st.mu is
// held.
func (st *state) unholdLocked(tenant, id string) {
	if _, ok := st.open[tenant][id]; !ok {
		return
	}
	delete(st.open[tenant], id)
	ids := st.sorted[tenant]
	if i, found := slices.BinarySearch(ids, id); found {
		st.sorted[tenant] = slices.Delete(ids, i, i+1)
	}
	if len(st.open[tenant]) == 0 {
		delete(st.open, tenant)
		delete(st.sorted, tenant)
	}
}

// openChunk is how many open conversations openBelow takes under st.mu at
// a time: the lock is held briefly however far a listing walks.
const openChunk = 128

// openBelow hands fn the open conversations of tenant this instance holds
// with ids below before (all of them when before is empty), in descending
// order of id, until fn returns false; those expired are left out and
// removed, as by each. The work is that of the conversations handed over,
// not of all that are open.
func (st *state) openBelow(tenant, before string, fn func(conversation.Conversation) bool) {
	now := st.now()
	es := make([]*entry, 0, openChunk)
	for {
		es = es[:0]
		st.mu.Lock()
		ids := st.sorted[tenant]
		i := len(ids)
		if before != "" {
			i, _ = slices.BinarySearch(ids, before)
		}
		for ; i > 0 && len(es) < openChunk; i-- {
			es = append(es, st.open[tenant][ids[i-1]])
		}
		if len(es) > 0 {
			before = ids[i]
		}
		st.mu.Unlock()
		if len(es) == 0 {
			return
		}
		for _, e := range es {
			e.mu.RLock()
			c, expired := e.conv, e.expiredLocked(now)
			e.mu.RUnlock()
			switch {
			case !c.Exists(), c.Tenant != tenant:
			case expired:
				st.remove(c.Tenant, c.ID, now)
			case !fn(c):
				return
			}
		}
	}
}
