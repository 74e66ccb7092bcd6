package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.RunLeases = (*Store)(nil)

// DefaultWriteLease is how long the lease of a generation being written by
// a run without a run lease lasts unless its writer renews it (every third
// of it): a generation whose writer stopped renewing for this long was
// abandoned by a killed run, and Cleanup deletes it.
const DefaultWriteLease = 30 * time.Second

// A lease's value is "<token> <owner>": holdsScript and the other scripts
// compare its first word with the token of the run that claims it.

// acquireScript takes a view's run lease when it is free: it draws the next
// fencing token from KEYS[2] and sets KEYS[1] to "<token> <owner>" for
// ARGV[2] milliseconds. It returns {1, token} when it took the lease, and
// {0, value, pttl} of the current holder otherwise.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  return {0, cur, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {1, tostring(token)}
`)

// reclaimScript is acquireScript that also takes the lease from a holder
// of the same owner ARGV[1] (an earlier attempt of the same job, whose
// process died or stalled), with a new token, so that the earlier attempt
// is fenced off.
var reclaimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local sp = string.find(cur, ' ', 1, true)
  local owner = sp and string.sub(cur, sp + 1) or ''
  if owner ~= ARGV[1] then
    return {0, cur, redis.call('PTTL', KEYS[1])}
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {1, tostring(token)}
`)

// renewScript extends lease KEYS[1] by ARGV[2] milliseconds when it still
// holds token ARGV[1]; it returns 1 when it did, 0 when the lease is lost.
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local p = ARGV[1] .. ' '
if cur and string.sub(cur, 1, #p) == p then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes lease KEYS[1] when it still holds token ARGV[1].
var releaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local p = ARGV[1] .. ' '
if cur and string.sub(cur, 1, #p) == p then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// AcquireLease takes the run lease of view for owner, for ttl (at least a
// millisecond). It returns a *larder.LeaseHeldError when another run holds
// it, and larder.ErrUnavailable or ctx.Err() when Redis cannot be reached.
func (s *Store) AcquireLease(ctx context.Context, view, owner string, ttl time.Duration) (larder.Lease, error) {
	return s.acquire(ctx, acquireScript, view, owner, ttl)
}

// ReclaimLease is AcquireLease that also takes the lease from a holder with
// the same owner, with a new token: a job's attempt takes the lease of an
// earlier attempt of the same job, whose worker died or stalled, and fences
// that attempt off. It returns a *larder.LeaseHeldError when another owner
// holds the lease.
func (s *Store) ReclaimLease(ctx context.Context, view, owner string, ttl time.Duration) (larder.Lease, error) {
	return s.acquire(ctx, reclaimScript, view, owner, ttl)
}

func (s *Store) acquire(ctx context.Context, script *redis.Script, view, owner string, ttl time.Duration) (larder.Lease, error) {
	ttl = max(ttl, time.Millisecond)
	res, err := script.Run(ctx, s.client, []string{s.k.lease(view), s.k.fence(view)}, owner, ttl.Milliseconds()).Slice()
	if err != nil {
		return larder.Lease{}, redisErr(ctx, "acquire the run lease of "+view, err)
	}
	if ok, _ := res[0].(int64); ok != 1 {
		value, _ := res[1].(string)
		held := &larder.LeaseHeldError{View: view}
		tok, who, _ := strings.Cut(value, " ")
		held.Token, _ = strconv.ParseInt(tok, 10, 64)
		held.Owner = who
		if len(res) > 2 {
			if ms, _ := res[2].(int64); ms > 0 {
				held.Expires = s.now().Add(time.Duration(ms) * time.Millisecond)
			}
		}
		return larder.Lease{}, held
	}
	tok, _ := res[1].(string)
	token, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		return larder.Lease{}, fmt.Errorf("store: acquire the run lease of %s: bad token %q", view, tok)
	}
	return larder.Lease{View: view, Token: token, Owner: owner, TTL: ttl}, nil
}

// RenewLease extends l by l.TTL from now. It returns an error wrapping
// larder.ErrLeaseLost when l is no longer held, and larder.ErrUnavailable
// or ctx.Err() when Redis cannot be reached.
func (s *Store) RenewLease(ctx context.Context, l larder.Lease) error {
	return s.renew(ctx, s.k.lease(l.View), strconv.FormatInt(l.Token, 10), l.TTL, "run lease of "+l.View)
}

// ReleaseLease deletes l if it is still held. It returns
// larder.ErrUnavailable or ctx.Err() when Redis cannot be reached; a lease
// that was lost is not an error.
func (s *Store) ReleaseLease(ctx context.Context, l larder.Lease) error {
	if !l.Held() {
		return nil
	}
	err := releaseScript.Run(ctx, s.client, []string{s.k.lease(l.View)}, strconv.FormatInt(l.Token, 10)).Err()
	if err != nil {
		return redisErr(ctx, "release the run lease of "+l.View, err)
	}
	return nil
}

// LeaseHolder returns the owner and token of the run that holds the run
// lease of view, with ok false when it is free.
func (s *Store) LeaseHolder(ctx context.Context, view string) (owner string, token int64, ok bool, err error) {
	v, err := s.client.Get(ctx, s.k.lease(view)).Result()
	if errors.Is(err, redis.Nil) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, redisErr(ctx, "read the run lease of "+view, err)
	}
	tok, who, _ := strings.Cut(v, " ")
	token, _ = strconv.ParseInt(tok, 10, 64)
	return who, token, true, nil
}

// renew extends the lease at key by ttl when it holds token.
func (s *Store) renew(ctx context.Context, key, token string, ttl time.Duration, what string) error {
	ok, err := renewScript.Run(ctx, s.client, []string{key}, token, max(ttl, time.Millisecond).Milliseconds()).Int64()
	if err != nil {
		return redisErr(ctx, "renew the "+what, err)
	}
	if ok != 1 {
		return fmt.Errorf("store: renew the %s (token %s): %w", what, token, larder.ErrLeaseLost)
	}
	return nil
}

// heartbeat renews the lease that holds the writer's generation every third
// of its TTL until the writer ends (stop is closed). When the lease is lost
// it fails the writer, so that the run stops writing and cannot publish.
func (w *Writer) heartbeat(stop <-chan struct{}) {
	defer close(w.beatDone)
	every := max(w.leaseTTL/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := w.s.renew(ctx, w.leaseKey, w.token, w.leaseTTL, fmt.Sprintf("lease of %s generation %d", w.view.Name, w.id))
		cancel()
		switch {
		case errors.Is(err, larder.ErrLeaseLost):
			w.fail(fmt.Errorf("store: write %s generation %d: %w", w.view.Name, w.id, err))
			return
		case err != nil:
			// Redis cannot be reached now: the lease may still be renewed
			// before it lapses; if it lapses, the next renewal says so.
			w.s.log.Warn("renewing a generation's lease failed; retrying", "view", w.view.Name, "generation", w.id, "err", err)
		}
	}
}
