// ScoutAlloc
