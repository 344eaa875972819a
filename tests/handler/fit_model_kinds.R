# Fit admission models of the kinds other than glm and lm (and some the handler must
# refuse), each saved as OUT_DIR/<kind>.rds: every kind, or only those named.
#
#   Rscript tests/handler/fit_model_kinds.R DATA.csv OUT_DIR [KIND...]
#
# Each fit runs in a fresh R session, as at a prompt. The seed is set before each fit: a
# forest is the same on every run, fitted alone or with the others. test_model_kinds.py
# compares the handler with R's own predict().

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) {
  message("usage: Rscript fit_model_kinds.R DATA.csv OUT_DIR [KIND...]")
  quit(save = "no", status = 2)
}
data <- read.csv(args[[1]])
out_dir <- args[[2]]

as_factors <- transform(data, rank = factor(rank), admit = factor(admit))
numeric_rank <- transform(data, admit = factor(admit))
with_gender <- transform(as_factors, gender = factor(rep(c("f", "m"), length.out = nrow(data))))
# Served: how each kind is fitted at a prompt (the response a factor for classification).
fits <- list(
  random_forest = quote(randomForest::randomForest(admit ~ gre + gpa + rank, data = as_factors,
                                                   ntree = 200)),
  random_forest_xy = quote(randomForest::randomForest(as_factors[c("gre", "gpa", "rank")],
                                                      as_factors$admit, ntree = 100)),
  # A forest regression on the 0/1 admit (randomForest warns: few unique values).
  random_forest_regression = quote(suppressWarnings(
    randomForest::randomForest(admit ~ gre + gpa + rank, data = data, ntree = 100))),
  gam = quote(mgcv::gam(admit ~ s(gpa) + s(gre) + rank, data = transform(data, rank = factor(rank)),
                        family = binomial)),
  rpart = quote(rpart::rpart(admit ~ gre + gpa + rank, data = as_factors)),
  rpart_anova = quote(rpart::rpart(admit ~ gre + gpa + rank, data = data)),
  nnet = quote(nnet::nnet(admit ~ gre + gpa + rank, data = as_factors, size = 3, decay = 0.1,
                          maxit = 500, trace = FALSE)),
  multinom = quote(nnet::multinom(admit ~ gre + gpa + rank, data = as_factors, trace = FALSE)),
  ranger = quote(ranger::ranger(admit ~ gre + gpa + rank, data = numeric_rank, probability = TRUE,
                                num.trees = 200)),
  ranger_factor_rank = quote(ranger::ranger(admit ~ gre + gpa + rank, data = as_factors,
                                            probability = TRUE, num.trees = 100))
)
# Refused at load: a forest that predicts classes, a variable requests do not carry, a
# class whose package this R lacks (e1071's svm), a class no package is known for.
refused <- list(
  ranger_classes = quote(ranger::ranger(admit ~ gre + gpa + rank, data = numeric_rank, num.trees = 20)),
  forest_with_gender = quote(randomForest::randomForest(admit ~ gre + gpa + rank + gender,
                                                        data = with_gender, ntree = 20)),
  unknown_class = quote(structure(list(coefficients = c(1, 2)), class = "svm")),
  unheard_of_class = quote(structure(list(), class = "admission_oracle"))
)

every <- c(fits, refused)
kinds <- if (length(args) > 2) args[-(1:2)] else names(every)
unknown <- setdiff(kinds, names(every))
if (length(unknown)) stop("unknown kind(s): ", paste(unknown, collapse = ", "))
for (kind in kinds) {
  set.seed(20171)
  saveRDS(eval(every[[kind]]), file.path(out_dir, paste0(kind, ".rds")))
}
