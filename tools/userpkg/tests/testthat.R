library(testthat)
library(carscore)
test_check("carscore")
