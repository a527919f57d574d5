"""The time limit of `edgekit compress`: shared out among stages, and never overrun by a child process."""

import time

from edgekit.compress.clock import FINISH, GRACE, RESERVE, Clock


def test_the_limit_counts_from_the_commands_start_not_from_when_the_clock_was_made():
    clock = Clock(100, ["onnx:int8"], start=time.monotonic() - 30)
    assert 69 < clock.left() <= 70


def test_a_stage_gets_its_weights_part_of_what_is_left_after_the_reserve():
    clock = Clock(400, ["onnx:int8", "tflite:int8"])  # weights 3 and 4
    assert abs(clock.share("onnx:int8") - (400 - RESERVE) * 3 / 7) < 1
    assert abs(clock.share("tflite:int8") - (400 - RESERVE)) < 1  # the last stage gets all that is left


def test_a_child_gets_its_grace_when_the_limit_is_far():
    clock = Clock(1000, ["prune"])
    assert clock.kill_after(100) == 100 + GRACE


def test_a_child_is_killed_before_the_limit_rather_than_take_the_command_past_it():
    # the last stage: its share is all that is left after the reserve, and its grace would overrun the limit
    clock = Clock(300, ["inc"], start=time.monotonic() - 200)
    seconds = clock.share("inc")
    timeout = clock.kill_after(seconds)
    assert seconds + 10 <= timeout < seconds + GRACE
    assert timeout <= clock.left() - FINISH + 0.1


def test_a_child_is_never_killed_before_its_own_deadline():
    clock = Clock(100, ["inc"], start=time.monotonic() - 99)  # the limit is all but gone
    assert clock.kill_after(20) == 30


def test_the_work_after_the_searches_is_kept_back_when_it_needs_more_than_the_reserve():
    # verifying a slow model's artifacts on the evaluation data: 100 s, more than the fixed reserve
    clock = Clock(400, ["onnx:int8", "tflite:int8"], after=100)
    assert abs(clock.share("onnx:int8") - (400 - 100) * 3 / 7) < 1
    last = clock.share("tflite:int8")
    assert abs(last - (400 - 100)) < 1
    assert abs(clock.kill_after(last) - (last + 10)) < 0.1  # not the 60 s grace: verification needs them


def test_a_search_child_is_killed_early_enough_for_verification_to_end_within_the_limit():
    clock = Clock(300, ["onnx:int8", "tflite:int8"], start=time.monotonic() - 100, after=100)  # 200 s left
    seconds = clock.share("onnx:int8")  # 3/7 of the 100 s not kept back
    timeout = clock.kill_after(seconds)
    assert seconds + 10 < timeout < seconds + GRACE
    assert abs(timeout - (clock.left() - 100)) < 0.5


def test_once_verified_the_rest_of_the_time_is_free_again():
    clock = Clock(300, ["inc"], after=200)
    clock.after = 0.0
    assert abs(clock.share("inc") - (300 - RESERVE)) < 1
