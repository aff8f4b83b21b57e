# Sourced by the example scripts. Every command is called as: <script> <input file> <output file> <error file>,
# with the input file on stdin too. It writes its JSON answer to the output file (nothing = no change), may
# write a cause to the error file, and exits 0 on success.
INPUT_FILE=$1
OUTPUT_FILE=$2
ERROR_FILE=$3

# The first "value" of the given key in the (compact) input JSON: enough for ids, without depending on jq.
json_id() {
  grep -o "\"$1\":{\"value\":\"[^\"]*\"" "$INPUT_FILE" | head -n 1 | sed 's/.*"value":"\([^"]*\)"/\1/'
}
