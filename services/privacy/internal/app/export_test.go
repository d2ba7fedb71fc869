package app

// KeyCacheLen returns how many subjects' keys a holds unwrapped.
func KeyCacheLen(a *App) int {
	return a.keyCache.Len()
}

// UnmarkedWithin is how far back a start follows PRIVACY.
const UnmarkedWithin = unmarkedWithin

// IndexLen returns how many data subjects' privacy events a holds.
func IndexLen(a *App) int {
	a.index.mu.Lock()
	defer a.index.mu.Unlock()
	return a.index.subjects.Len()
}
