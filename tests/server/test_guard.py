"""The abuse rules as bookkeeping: a clock passed in, no sockets (schat.server.guard)."""

from __future__ import annotations

from schat.server.guard import AddressRates, CryptoShare, LoginPenalties, SignupLimit, TokenBucket


def _penalties(ceiling: int = 100) -> LoginPenalties:
    return LoginPenalties(base=2.0, maximum=60.0, free=3, ceiling=ceiling, entries=1000)


def test_pair_penalty_holds_back_only_that_address_for_that_account():
    box = _penalties()
    for _ in range(4):
        assert box.admit("10.0.0.1", "alice", 0.0) == 0
        box.failed("10.0.0.1", "alice", 0.0)
    assert box.admit("10.0.0.1", "alice", 0.0) > 0
    assert box.admit("10.0.0.2", "Alice", 0.0) == 0   # names compare by name_key
    assert box.admit("10.0.0.2", None, 0.0) == 0      # a key login from elsewhere


def test_a_right_password_clears_the_pair_but_not_the_address():
    box = _penalties()
    for _ in range(2):
        box.failed("10.0.0.1", "alice", 0.0)
    box.succeeded("10.0.0.1", "alice")
    assert not box.box.known("10.0.0.1|user:alice", 0.0)
    # The address's own record stays (a guesser cannot wipe it by logging in as
    # itself): two more failures on any account make it wait.
    box.failed("10.0.0.1", "bob", 0.0)
    box.failed("10.0.0.1", "carol", 0.0)
    assert box.admit("10.0.0.1", "dave", 0.0) > 0


def test_over_the_ceiling_only_a_clean_address_with_nothing_in_flight_is_checked():
    box = _penalties(ceiling=2)
    for i in range(3):
        box.failed(f"10.0.1.{i}", "alice", 0.0)
    assert box.admit("10.0.1.0", "alice", 1.0) > 0      # has a failure on record
    assert box.admit("10.0.9.9", "alice", 1.0) == 0     # clean: checked ...
    assert box.admit("10.0.9.9", "alice", 1.0) > 0      # ... one attempt at a time
    box.succeeded("10.0.9.9", "alice")
    assert box.admit("10.0.9.9", "alice", 1.0) == 0     # still clean after a success
    box.settled("10.0.9.9", "alice")                    # (locked, busy, ...)
    assert box.admit("10.0.9.9", "bob", 1.0) == 0       # other accounts are not guarded


def test_an_attempt_that_never_reports_back_stops_counting_as_in_flight():
    box = LoginPenalties(base=100.0, maximum=1000.0, free=3, ceiling=1, entries=100)
    box.failed("10.0.1.1", "alice", 0.0)
    box.failed("10.0.1.2", "alice", 0.0)               # guarded until t = 100
    assert box.admit("10.0.8.8", "alice", 1.0) == 0     # its connection then vanishes
    assert box.admit("10.0.8.8", "alice", 2.0) > 0
    assert box.admit("10.0.8.8", "alice", 1.0 + LoginPenalties.INFLIGHT_TTL) == 0


def test_the_ceiling_is_forgotten_like_any_penalty():
    box = _penalties(ceiling=1)
    box.failed("10.0.1.1", "alice", 0.0)
    box.failed("10.0.1.2", "alice", 0.0)
    assert box.admit("10.0.1.1", "alice", 1.0) > 0
    assert box.admit("10.0.1.1", "alice", 200.0) == 0


def test_penalties_off_means_no_waits_at_all():
    box = LoginPenalties(base=0.0, maximum=0.0, free=3, ceiling=1, entries=10)
    for _ in range(10):
        box.failed("10.0.0.1", "alice", 0.0)
    assert box.admit("10.0.0.1", "alice", 0.0) == 0


def test_signup_limit_is_a_sliding_hour_and_refusals_give_slots_back():
    limit = SignupLimit(per_window=2, window=3600.0, entries=100)
    assert limit.reserve("a", 0.0) == 0 and limit.reserve("a", 10.0) == 0
    assert limit.reserve("a", 20.0) == 3580.0          # the first slot frees at 3600
    assert limit.reserve("b", 20.0) == 0               # per address
    limit.cancel("a")                                  # the second sign-up was refused
    assert limit.reserve("a", 30.0) == 0
    assert limit.reserve("a", 3600.0) == 0             # the first stamp left the window
    assert SignupLimit(0, 3600.0, 10).reserve("a", 0.0) == 0   # 0: no limit


def test_crypto_share_charges_real_cost_and_bounds_pending_jobs():
    share = CryptoShare(share=0.1, burst=0.2, pending=2, entries=100)
    assert share.admit("a", 0.0) and share.admit("a", 0.0)
    assert not share.admit("a", 0.0)                   # two jobs already pending
    share.done("a", 0.15, 0.0)
    share.done("a", 0.15, 0.0)                         # balance 0.2 - 0.3 = -0.1
    assert not share.admit("a", 0.5)                   # refilled to -0.05 only
    assert share.admit("b", 0.5)                       # another address is not touched
    assert share.admit("a", 1.5)                       # +0.1/s: positive again


def test_address_rates_share_one_bucket_per_address():
    rates = AddressRates(rate=1.0, burst=3, entries=100)
    assert [rates.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rates.take("b", 0.0)
    assert rates.take("a", 1.0)
    assert AddressRates(0.0, 1, 10).take("a", 0.0)     # 0: no limit


def test_a_reload_gives_new_rates_and_waits_from_then_on():
    rates = AddressRates(rate=1.0, burst=2, entries=100)
    assert [rates.take("a", 0.0) for _ in range(3)] == [True, True, False]
    rates.configure(rate=1.0, burst=5)                 # a fresh, larger budget at once
    assert [rates.take("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    box = _penalties()
    for _ in range(4):
        box.failed("10.0.0.1", None, 0.0)
    before = box.admit("10.0.0.1", None, 0.0)
    assert before == 2.0                               # base 2 after the free 3
    box.configure(base=10.0, maximum=60.0)
    assert box.admit("10.0.0.1", None, 0.0) == before  # an imposed wait runs its course
    box.failed("10.0.0.1", None, 0.0)
    assert box.admit("10.0.0.1", None, 0.0) == 20.0    # the next at the new base


def test_per_address_tables_are_bounded():
    rates = AddressRates(rate=1.0, burst=1, entries=3)
    share = CryptoShare(0.1, 0.1, 1, entries=3)
    limit = SignupLimit(1, 3600.0, entries=3)
    box = LoginPenalties(base=100.0, maximum=1000.0, free=3, ceiling=1, entries=3)
    box.failed("10.0.1.1", "alice", 0.0)
    box.failed("10.0.1.2", "alice", 0.0)
    for i in range(100):
        rates.take(f"10.0.0.{i}", 0.0)
        share.admit(f"10.0.0.{i}", 0.0)
        limit.reserve(f"10.0.0.{i}", 0.0)
        box.admit(f"10.0.0.{i}", "alice", 0.0)          # each one in flight
    assert len(rates._buckets) == 3 and len(share._addresses) == 3 and len(limit._stamps) == 3
    assert len(box._inflight) == 3


def test_a_token_bucket_is_full_once_refilled_and_its_strikes_drained():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert bucket.full(0.0)
    assert bucket.take(0.0) and not bucket.full(0.0)
    assert not bucket.full(0.49) and bucket.full(0.5)   # one token back at 2 a second
    for _ in range(3):
        bucket.take(1.0)
    assert not bucket.take(1.0)                          # a refusal: one strike
    assert not bucket.full(2.4)                          # tokens full at 2.5 ...
    assert bucket.full(2.5)                              # ... and the strike drained at 1.5
    for _ in range(10):
        bucket.take(3.0)                                 # 7 strikes after 3 tokens
    assert bucket.tokens + 2.0 * 1.5 >= bucket.burst and not bucket.full(4.5)
    assert bucket.full(6.5)
