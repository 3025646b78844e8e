# print/format/summary: short, plain without colour, and summary() as data frames.

test_that("targets, credentials and plans format and summarise without secrets", {
  key <- "c2VjcmV0LXN0b3JhZ2Uta2V5LTEyMzQ1Njc4OTA="
  t <- az_target("00000000-0000-0000-0000-000000000000", "rg-models", "westeurope", "mymodels",
                 storage_key = key)
  out <- format(t)
  expect_match(out[1], "<serverless_target> Azure")
  expect_lte(length(out), 8)
  s <- summary(t)
  expect_s3_class(s, "data.frame")
  expect_equal(nrow(s), 1)
  expect_equal(s$auth, "account key")
  expect_false(any(grepl(key, unlist(s), fixed = TRUE)))

  cred <- az_credential("client_secret", tenant = "11111111-1111-1111-1111-111111111111",
                        client_id = "22222222-2222-2222-2222-222222222222",
                        client_secret = "a-client-secret-value-000")
  expect_equal(summary(cred)$secret, "<hidden>")
  expect_false(any(grepl("a-client-secret-value-000", c(format(cred), unlist(summary(cred))))))

  plan <- serveRless:::new_plan(list(
    list(action = "create", kind = "registry", id = "/r/1", detail = ""),
    list(action = "create", kind = "identity", id = "/i/1", detail = ""),
    list(action = "unchanged", kind = "registry", id = "/r/2", detail = ""),
    list(action = "update", kind = "blob", id = "b", detail = "")
  ), "deploy_model(mpg)")
  out <- cli::ansi_strip(format(plan))
  expect_equal(out[1], "<serverless_plan> deploy_model(mpg): 2 create, 1 update, 0 delete, 1 unchanged")
  expect_match(out[2], "^  \\+ create +registry +/r/1$")
  expect_match(out[4], "^  = unchanged")
  p <- summary(plan)
  expect_equal(p$kind, c("blob", "identity", "registry"))
  expect_equal(p$create, c(0L, 1L, 1L))
  expect_equal(p$unchanged, c(0L, 0L, 1L))
})
