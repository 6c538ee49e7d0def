// ScoutBlockIO
