// ScoutBTree
