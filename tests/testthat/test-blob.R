test_that("blob_upload() and blob_download() round-trip a file and verify it", {
  target <- test_target()
  src <- random_file(20e6 + 123)
  up <- blob_upload(target, src, "serverless/test-blob/round.bin")
  expect_equal(up$size, 20e6 + 123)
  expect_equal(up$blocks, 5) # 4 MiB blocks
  expect_equal(up$blocks_sent, 5)
  dest <- withr::local_tempfile()
  down <- blob_download(target, "serverless/test-blob/round.bin", dest)
  expect_true(down$verified)
  expect_equal(down$sha256, up$sha256)
  expect_equal(unname(tools::md5sum(dest)), unname(tools::md5sum(src)))
  expect_false(file.exists(paste0(dest, ".part")))
})

test_that("small and empty files round-trip", {
  target <- test_target()
  for (size in c(0, 1, 1000)) {
    src <- withr::local_tempfile()
    writeBin(as.raw(seq_len(size) %% 256), src)
    blob_upload(target, src, sprintf("serverless/test-blob/small-%d", size))
    dest <- withr::local_tempfile()
    blob_download(target, sprintf("serverless/test-blob/small-%d", size), dest)
    expect_equal(file.size(dest), size)
    expect_identical(readBin(dest, "raw", size + 1), readBin(src, "raw", size + 1))
  }
})

test_that("blob_list() and blob_delete() work on prefixes and paths", {
  target <- test_target()
  f <- withr::local_tempfile()
  writeLines("x", f)
  for (p in c("a.csv", "b.csv", "sub/c.csv")) blob_upload(target, f, paste0("serverless/test-list/", p))
  listed <- blob_list(target, "serverless/test-list/")
  expect_setequal(listed$path, paste0("serverless/test-list/", c("a.csv", "b.csv", "sub/c.csv")))
  expect_equal(listed$size, rep(2, 3))
  expect_s3_class(listed$last_modified, "POSIXct")
  blob_delete(target, "serverless/test-list/b.csv")
  expect_setequal(blob_list(target, "serverless/test-list/")$path,
                  paste0("serverless/test-list/", c("a.csv", "sub/c.csv")))
  expect_error(blob_delete(target, "serverless/test-list/b.csv"), "BlobNotFound",
               class = "serverless_error_azure")
})

test_that("blob_upload(overwrite = FALSE) never replaces a blob", {
  target <- test_target()
  f <- withr::local_tempfile()
  writeLines("first", f)
  blob_upload(target, f, "serverless/test-blob/once.txt", overwrite = FALSE)
  writeLines("second", f)
  err <- expect_error(blob_upload(target, f, "serverless/test-blob/once.txt", overwrite = FALSE),
                      class = "serverless_error_azure")
  expect_equal(err$status, 409L)
  dest <- withr::local_tempfile()
  blob_download(target, "serverless/test-blob/once.txt", dest)
  expect_equal(readLines(dest), "first")
})

test_that("bad blob input fails with a classed error before any network call", {
  # An endpoint where nothing listens: reaching the network would give another error.
  offline <- azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  f <- withr::local_tempfile()
  writeLines("x", f)
  expect_error(blob_upload(offline, "/no/such/file.csv", "serverless/x.csv"),
               "/no/such/file.csv", class = "serverless_error_input")
  expect_error(blob_upload(offline, f, "nocontainerpath"), "container/path",
               class = "serverless_error_input")
  expect_error(blob_upload(offline, f, "UPPER/x.csv"), "UPPER",
               class = "serverless_error_input")
  expect_error(blob_upload("not a target", f, "serverless/x.csv"), class = "serverless_error_input")
  expect_error(blob_download(offline, "serverless/x.csv", f), "already exists",
               class = "serverless_error_input")
  expect_error(blob_list(offline, 1), class = "serverless_error_input")

  expired <- azurite_az_target(storage_key = NULL,
    storage_sas = "sv=2022-11-02&sr=c&sp=racwl&se=2001-01-01T00:00:00Z&sig=abc",
    blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  err <- expect_error(blob_upload(expired, f, "serverless/x.csv"), class = "serverless_error_auth")
  expect_match(conditionMessage(err), "expired at 2001-01-01T00:00:00Z", fixed = TRUE)

  read_only <- azurite_az_target(storage_key = NULL,
    storage_sas = "sv=2022-11-02&sr=c&sp=rl&se=2099-01-01T00:00:00Z&sig=abc",
    blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  err <- expect_error(blob_upload(read_only, f, "serverless/x.csv"), class = "serverless_error_auth")
  expect_match(conditionMessage(err), "sp=rl", fixed = TRUE)
  expect_error(blob_delete(read_only, "serverless/x.csv"), "delete", class = "serverless_error_auth")
  expect_false(grepl("abc", conditionMessage(err), fixed = TRUE))
})

test_that("a bearer token Azure Storage would refuse is refused locally, as in Azure", {
  # Azurite itself (--oauth basic) takes any bearer token; the local Azure's storage
  # gate checks them as Azure Storage does. A token for Storage with every claim
  # Azurite looks at, signed by no one: 401 InvalidAuthenticationInfo, nothing listed.
  b64 <- function(x) gsub("[\n=]", "", chartr("+/", "-_", jsonlite::base64_enc(x)))
  tenant <- "72f988bf-86f1-41af-91ab-2d7cd011db47"
  now <- as.integer(Sys.time())
  claims <- sprintf(paste0('{"aud":"https://storage.azure.com","iss":"https://sts.windows.net/%s/",',
                           '"tid":"%s","oid":"%s","iat":%d,"nbf":%d,"exp":%d}'),
                    tenant, tenant, "5b6a4c6e-0000-4000-8000-000000000000", now - 60, now - 60, now + 3600)
  forged <- paste(b64('{"alg":"RS256","typ":"JWT"}'), b64(claims), b64("not a signature"), sep = ".")
  t <- azurite_az_target(storage_key = NULL, storage_token = forged)
  err <- expect_error(blob_list(t, "serverless/"), class = "serverless_error_auth")
  expect_equal(err$status, 401L)
  expect_equal(err$code, "InvalidAuthenticationInfo")
})

test_that("a missing container is named, with what to do", {
  target <- azurite_az_target(container = "no-such-container")
  err <- expect_error(store_model(fit_models()$lm, "mpg", target), class = "serverless_error_azure")
  expect_equal(err$status, 404L)
  expect_match(conditionMessage(err), "container `no-such-container` does not exist", fixed = TRUE)
  expect_error(blob_list(target), "no-such-container", class = "serverless_error_azure")
})

test_that("progress bars stay quiet where they cannot redraw (a knitted document, a log)", {
  target <- test_target()
  f <- random_file(8 * 1024^2)
  # Even shown at once, a bar in a non-dynamic output would be one static line per update.
  withr::local_options(cli.progress_show_after = 0, knitr.in.progress = TRUE, cli.dynamic = FALSE)
  shown <- character()
  withCallingHandlers(
    blob_upload(target, f, "serverless/test-bars/x.bin"),
    message = function(m) {
      shown <<- c(shown, conditionMessage(m))
      invokeRestart("muffleMessage")
    },
    cliMessage = function(m) shown <<- c(shown, conditionMessage(m))
  )
  expect_false(any(grepl("uploading", shown)), info = paste(shown, collapse = "\n"))
  expect_true("serverless/test-bars/x.bin" %in% blob_list(target, "serverless/test-bars/")$path)
})
