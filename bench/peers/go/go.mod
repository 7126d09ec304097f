module echod.bench/goecho

go 1.19
