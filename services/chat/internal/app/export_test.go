package app

// Held returns how many conversations s holds in memory, open and closed.
func Held(s *Service) int {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	n := s.state.closed.Len()
	for _, byID := range s.state.open {
		n += len(byID)
	}
	return n
}

// ClosedCached is closedCached, for the tests of its bound.
const ClosedCached = closedCached

// ViewGrace is viewGrace, for the tests of entries' expiry.
const ViewGrace = viewGrace
