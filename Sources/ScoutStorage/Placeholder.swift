// ScoutStorage
