package dumptmp
import ("context";"os";"path/filepath";"strings";"testing";"github.com/txlane/txlane/internal/difftest")
func TestDump(t *testing.T){
 files,_ := filepath.Glob("/work/main/proxy/testdata/scenarios/*.txt")
 os.MkdirAll("/tmp/transcripts", 0o755)
 for _, f := range files {
  sc, err := difftest.ParseFile(f); if err!=nil {t.Fatal(err)}
  tr, err := difftest.Execute(context.Background(), sc, os.Getenv("TXLANE_TEST_DATABASE")); if err!=nil{t.Fatal(err)}
  os.WriteFile("/tmp/transcripts/"+strings.TrimSuffix(filepath.Base(f),".txt")+".out", []byte(tr.Text+"\nCLIENT ERRORS: "+strings.Join(tr.ClientErrors,"\n")), 0o644)
 }
}
