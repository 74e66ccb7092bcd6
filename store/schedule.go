package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.ScheduleLog = (*Store)(nil)

// Fields of a view's schedule hash (keys.sched).
const (
	schedLastTick = "last_tick" // unix microseconds
	schedOutcome  = "outcome"
	schedOwner    = "owner"
	schedJob      = "job"
)

// claimScript claims tick ARGV[1] (unix microseconds) of a view for owner
// ARGV[2]: the schedule hash KEYS[1], the run lease KEYS[2] and its token
// counter KEYS[3] share the view's hash tag. ARGV[3] is the lease TTL in
// milliseconds (0: take no lease), ARGV[4] is 1 when the caller knows the
// previous run is going, ARGV[5] is 1 to record a busy tick as skipped.
//
// It returns {'taken'} when the tick, or a later one, was claimed already;
// {'busy', holder} or {'skipped', holder} when the previous run is going;
// {'started', token} when it claimed the tick (token '0' without a lease).
var claimScript = redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], 'last_tick') or '0')
if last >= tonumber(ARGV[1]) then
  return {'taken'}
end
local holder = redis.call('GET', KEYS[2])
if holder or ARGV[4] == '1' then
  if ARGV[5] == '1' then
    -- The job of the run still going stays recorded: the next tick must
    -- see it too.
    redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], 'outcome', 'skipped', 'owner', ARGV[2])
    return {'skipped', holder or ''}
  end
  return {'busy', holder or ''}
end
local token = '0'
if tonumber(ARGV[3]) > 0 then
  token = tostring(redis.call('INCR', KEYS[3]))
  redis.call('SET', KEYS[2], token .. ' ' .. ARGV[2], 'PX', ARGV[3])
end
redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], 'outcome', 'started', 'owner', ARGV[2], 'job', '')
return {'started', token}
`)

// ClaimTick claims tick of view (see larder.ScheduleLog). Ticks are
// compared to the microsecond.
func (s *Store) ClaimTick(ctx context.Context, view string, tick time.Time, opts larder.ClaimOptions) (larder.TickClaim, error) {
	owner := opts.Owner
	if owner == "" {
		owner = s.opts.Owner
	}
	busy, skip := "0", "0"
	if opts.Busy {
		busy = "1"
	}
	if opts.Skip {
		skip = "1"
	}
	ttl := int64(0)
	if opts.LeaseTTL > 0 {
		ttl = max(opts.LeaseTTL, time.Millisecond).Milliseconds()
	}
	res, err := claimScript.Run(ctx, s.client, []string{s.k.sched(view), s.k.lease(view), s.k.fence(view)},
		tick.UnixMicro(), owner, ttl, busy, skip).StringSlice()
	if err != nil {
		return larder.TickClaim{}, redisErr(ctx, "claim a tick of "+view, err)
	}
	c := larder.TickClaim{Outcome: larder.TickOutcome(res[0])}
	switch c.Outcome {
	case larder.TickBusy, larder.TickSkipped:
		_, c.Holder, _ = strings.Cut(res[1], " ")
	case larder.TickStarted:
		if token, _ := strconv.ParseInt(res[1], 10, 64); token > 0 {
			c.Lease = larder.Lease{View: view, Token: token, Owner: owner, TTL: opts.LeaseTTL}
		}
	}
	return c, nil
}

// ScheduleState returns what is recorded of view's schedule: the zero
// ScheduleState when no tick was ever claimed.
func (s *Store) ScheduleState(ctx context.Context, view string) (larder.ScheduleState, error) {
	h, err := s.client.HGetAll(ctx, s.k.sched(view)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return larder.ScheduleState{}, redisErr(ctx, "read the schedule of "+view, err)
	}
	st := larder.ScheduleState{Outcome: larder.TickOutcome(h[schedOutcome]), Owner: h[schedOwner], Job: h[schedJob]}
	if st.LastTick, err = parseMicros(h[schedLastTick]); err != nil {
		return larder.ScheduleState{}, err
	}
	return st, nil
}

// setJobScript records job ARGV[2] for the claimed tick ARGV[1] of the
// schedule hash KEYS[1], unless a later tick was claimed since.
var setJobScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'last_tick') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'job', ARGV[2])
  return 1
end
return 0
`)

// SetTickJob records job as the job that runs the claimed tick of view,
// unless a later tick was claimed since.
func (s *Store) SetTickJob(ctx context.Context, view string, tick time.Time, job string) error {
	err := setJobScript.Run(ctx, s.client, []string{s.k.sched(view)}, strconv.FormatInt(tick.UnixMicro(), 10), job).Err()
	if err != nil {
		return redisErr(ctx, "record the job of a tick of "+view, err)
	}
	return nil
}
