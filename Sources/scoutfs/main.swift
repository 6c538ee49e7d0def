print("scoutfs")
