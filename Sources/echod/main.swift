print("echod")
