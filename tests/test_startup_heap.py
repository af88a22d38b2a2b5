import gc
import weakref

from wxgate.startup_heap import StartupHeap


class Node:
    other: object = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a  # unreachable once returned: only the collector frees it
    return weakref.ref(a)


def test_running_freezes_the_live_startup_heap_but_not_its_garbage():
    gc.unfreeze()
    try:
        garbage = _cycle()
        StartupHeap().running()
        assert gc.get_freeze_count() > 1000
        assert garbage() is None
    finally:
        gc.unfreeze()


def test_objects_made_after_running_are_collected_as_before():
    gc.unfreeze()
    try:
        StartupHeap().running()
        later = _cycle()
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()


def test_a_second_running_in_the_same_process_freezes_nothing_more():
    gc.unfreeze()
    try:
        StartupHeap().running()
        frozen = gc.get_freeze_count()
        keep = [Node() for _ in range(100)]
        StartupHeap().running()
        assert gc.get_freeze_count() == frozen and keep
    finally:
        gc.unfreeze()
