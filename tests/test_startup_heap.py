import gc

from wxgate.startup_heap import StartupHeap


def test_running_freezes_the_startup_heap_and_later_objects_are_collected_as_before():
    try:
        StartupHeap().running()
        assert gc.get_freeze_count() > 1000

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after startup: garbage to the collector
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
